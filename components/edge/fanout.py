"""The legacy sockets' fan-out: one subscription per topic for every legacy socket of the
router worker, reference-counted, and each event framed once for all of them."""

from functools import partial
from typing import Any, Callable, Dict, Iterable, List, Optional, Protocol, Set

from autobahn.websocket.protocol import PreparedMessage
from twisted.internet import defer
from twisted.logger import Logger

from components.core import legacy as legacyframes
from components.core.errors import UNAVAILABLE, Refused
from components.service.slot import Slot


class Socket(Protocol):
    """A legacy socket, as the fan-out sees it."""

    def deliver(self, prepared: PreparedMessage) -> None: ...


class SlotBridge:
    """The fan-out's view of the router session in a :class:`~components.service.slot.Slot`:
    subscribe through it, and hear when it (re)joins or goes."""

    def __init__(self, slot: Slot) -> None:
        self._slot = slot

    @property
    def session(self) -> Optional[Any]:
        return self._slot.value

    def on_join(self, callback: Callable[[Any], None]) -> None:
        self._slot.on_set(callback)

    def on_lost(self, callback: Callable[[], None]) -> None:
        self._slot.on_clear(callback)

    def subscribe(self, handler: Callable[..., None], topic: str) -> defer.Deferred:
        session = self._slot.value
        if session is None:
            return defer.fail(Refused(UNAVAILABLE, "the bridge session is not joined"))
        return session.subscribe(handler, topic)


class _Topic:
    """One topic's legacy sockets and its one subscription."""

    __slots__ = ("sockets", "subscription", "pending", "waiters")

    def __init__(self) -> None:
        self.sockets: Set[Socket] = set()
        self.subscription = None
        self.pending = False
        self.waiters: List[defer.Deferred] = []


class Fanout:
    """Reference-counted subscriptions shared by every legacy socket of the worker.

    A topic is subscribed when its first socket joins and unsubscribed when its last one
    leaves. Each event is framed once and the same bytes are written to every socket.

    :param bridge: subscribes (``subscribe(handler, topic)``) and reports the session's
        (re)joins and losses (``on_join``, ``on_lost``)
    :param prepare: frames a text payload once (``WebSocketServerFactory.prepareMessage``)
    """

    log = Logger()

    def __init__(self, bridge: SlotBridge, prepare: Callable[[bytes], PreparedMessage]) -> None:
        self._bridge = bridge
        self._prepare = prepare
        self._topics: Dict[str, _Topic] = {}
        # bumped when the session is lost: answers to the old session's requests are stale
        self._generation = 0
        bridge.on_join(self._rejoined)
        bridge.on_lost(self._lost)

    def stats(self) -> Dict[str, int]:
        """How many topics are held and how many socket memberships they have.

        :rtype: dict
        """
        return {"topics": len(self._topics),
                "subscribed": sum(1 for t in self._topics.values() if t.subscription is not None),
                "memberships": sum(len(t.sockets) for t in self._topics.values())}

    def is_subscribed(self, topic: str) -> bool:
        entry = self._topics.get(topic)
        return entry is not None and entry.subscription is not None

    def join(self, sock: Socket, topics: Iterable[str]) -> defer.Deferred:
        """Add ``sock`` to ``topics``; fire once every one of them is subscribed.

        :rtype: Deferred
        """
        waits = []
        for topic in topics:
            entry = self._topics.get(topic)
            if entry is None:
                entry = self._topics[topic] = _Topic()
            entry.sockets.add(sock)
            if entry.subscription is None and not entry.pending:
                self._subscribe(topic, entry)
            if entry.subscription is None:
                d: defer.Deferred = defer.Deferred()
                entry.waiters.append(d)
                waits.append(d)
        return defer.gatherResults(waits, consumeErrors=True)

    def leave(self, sock: Socket, topics: Iterable[str]) -> None:
        """Remove ``sock`` from ``topics``; unsubscribe the topics it was the last socket of."""
        for topic in topics:
            entry = self._topics.get(topic)
            if entry is None:
                continue
            entry.sockets.discard(sock)
            if entry.sockets or entry.pending:
                continue  # a pending subscribe cleans up when it completes
            self._drop(topic, entry)

    def _drop(self, topic: str, entry: _Topic) -> None:
        if self._topics.get(topic) is entry:
            del self._topics[topic]
        self._fire(entry, None)
        if entry.subscription is not None and self._bridge.session is not None:
            self.log.debug("deptcast legacy: no sockets left on {topic}; unsubscribing", topic=topic)
            d = entry.subscription.unsubscribe()
            d.addErrback(lambda f: self.log.info("deptcast legacy: unsubscribe {topic} failed: {e}",
                                                 topic=topic, e=f.getErrorMessage()))
        entry.subscription = None

    @staticmethod
    def _fire(entry: _Topic, failure) -> None:
        waiters, entry.waiters = entry.waiters, []
        for d in waiters:
            if d.called:
                continue  # cancelled by a handshake that timed out
            if failure is None:
                d.callback(None)
            else:
                d.errback(failure)

    def _subscribe(self, topic: str, entry: _Topic) -> None:
        if self._bridge.session is None:
            return  # the waiters wait for the rejoin (the handshake has its own timeout)
        entry.pending = True
        generation = self._generation

        def done(subscription):
            if generation != self._generation:
                return  # the session was lost meanwhile; _rejoined subscribes again
            entry.pending = False
            entry.subscription = subscription
            if not entry.sockets:
                self._drop(topic, entry)
            else:
                self._fire(entry, None)

        def failed(failure):
            if generation != self._generation:
                return
            entry.pending = False
            self.log.warn("deptcast legacy: cannot subscribe {topic}: {e}", topic=topic,
                          e=failure.getErrorMessage())
            self._fire(entry, failure)
            if not entry.sockets and self._topics.get(topic) is entry:
                del self._topics[topic]

        self._bridge.subscribe(partial(self._deliver, topic), topic).addCallbacks(done, failed)

    def _rejoined(self, session) -> None:
        for topic, entry in list(self._topics.items()):
            if entry.sockets:
                self._subscribe(topic, entry)
            else:
                del self._topics[topic]
        if self._topics:
            self.log.info("deptcast legacy: resubscribing {n} topics", n=len(self._topics))

    def _lost(self) -> None:
        self._generation += 1
        for entry in self._topics.values():
            entry.subscription = None
            entry.pending = False

    def _deliver(self, topic: str, envelope: Any = None, *args: Any, **kwargs: Any) -> None:
        entry = self._topics.get(topic)
        if entry is None or not entry.sockets:
            return
        payload = legacyframes.message_frame(envelope)
        if payload is None:
            self.log.warn("deptcast legacy: an event on {topic} has no message text; not forwarded", topic=topic)
            return
        prepared = self._prepare(payload)
        # a copy: a write may fail and close a socket, which leaves the set
        for sock in tuple(entry.sockets):
            sock.deliver(prepared)
