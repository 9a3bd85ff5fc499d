"""The legacy sockets' fan-out: one subscription per topic for every legacy socket of the
router worker, reference-counted, each event framed once for all of them, and every
message delivered once, in ``seq`` order, even when the router did not bring it.

Old pages have no ``seq`` and no history: whatever the router does not deliver, they never
show. The router misses events while this node's link to a peer is down (a network blip, a
peer's pause: 1-3 s of the peer's messages) and, before the link repair in
:mod:`components.upstream.rlinks`, delivered some twice. So the fan-out is the careful
subscriber on the pages' behalf (:class:`~components.core.sequence.TopicSequence`):

- it knows each topic's ``seq`` from the first subscription on (the store's head then);
- an event whose ``seq`` jumps is held; if the missing ones have not arrived live after
  :data:`GAP_GRACE` seconds (events via different nodes can arrive out of order), it reads
  them from the store and delivers them, then the held ones, in order;
- when this node's link to a peer comes back (:class:`~components.service.links.LinkState`),
  it asks the store which topics moved past what it delivered and reads those, so a quiet
  topic's missed messages arrive too;
- anything numbered below what it delivered is a duplicate and is dropped;
- held events wait at most :data:`HOLD_MAX` seconds (the store may be down): then they go
  out and the gap is given up, with a warning.
"""

from functools import partial
from typing import Any, Callable, Dict, Iterable, List, Optional, Protocol, Sequence, Set, Tuple

from autobahn.websocket.protocol import PreparedMessage
from twisted.internet import defer, reactor as default_reactor
import txaio

from components.core import legacy as legacyframes
from components.core.errors import UNAVAILABLE, Refused
from components.core.metrics import LEGACY_DELIVERIES
from components.core.sequence import TopicSequence, seq_of
from components.service.links import LinkState
from components.service.slot import Slot

txaio.use_twisted()  # a Twisted module: its txaio loggers are Twisted's

#: seconds a seq gap may stay open before the fan-out reads the missing messages from the store
GAP_GRACE = 0.2
#: seconds newer events are held behind a gap at most (the store may be down)
HOLD_MAX = 10.0
#: seconds between two attempts to read a gap the store could not answer
READ_RETRY = 0.5
#: envelopes per store read
READ_PAGE = 500
#: seconds the first subscription of a topic waits for the store's head before going on without
HEAD_TIMEOUT = 2.0
#: seconds between two log lines of one kind about the store (a store outage touches every topic)
LOG_EVERY = 10.0


class Socket(Protocol):
    """A legacy socket, as the fan-out sees it."""

    def deliver(self, prepared: PreparedMessage) -> bool:
        """Write the frame; answer whether it was written."""


class Written(Protocol):
    """Where the fan-out records who an event was written to (receipts: ``delivered``)."""

    def written(self, envelope_id: Any, users: Sequence[Tuple[str, str]]) -> None: ...


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


class Reader(Protocol):
    """Where the fan-out reads what it missed (the node's message service)."""

    def since(self, topic: str, seq: int, limit: int) -> defer.Deferred: ...

    def heads(self, topics: Sequence[str], timeout: float) -> defer.Deferred: ...


class ServiceReader:
    """The fan-out's reads through the node's :class:`~components.service.messaging.MessageService`
    in a :class:`~components.service.slot.Slot` (waiting a bounded time while it starts)."""

    def __init__(self, slot: Slot, timeout: float = 10.0) -> None:
        self._slot = slot
        self._timeout = timeout

    def since(self, topic: str, seq: int, limit: int) -> defer.Deferred:
        d = self._slot.get(self._timeout)
        return d.addCallback(lambda service: service.topic_since(topic, seq, limit))

    def heads(self, topics: Sequence[str], timeout: float) -> defer.Deferred:
        d = self._slot.get(timeout)
        return d.addCallback(lambda service: service.topic_heads(list(topics)))


class _Topic:
    """One topic's legacy sockets, its one subscription, and where its numbering stands."""

    __slots__ = ("sockets", "subscription", "pending", "waiters", "order", "reading", "again", "draining",
                 "grace_call", "retry_call", "hold_call", "readers")

    def __init__(self) -> None:
        self.sockets: Set[Socket] = set()
        #: receipts: the (dept, user) of its token-checked sockets, made again after a join or leave
        self.readers: Optional[Tuple[Tuple[str, str], ...]] = None
        self.subscription = None
        self.pending = False
        self.waiters: List[defer.Deferred] = []
        self.order: Optional[TopicSequence] = None  # known once the first subscribe began
        self.reading = False       # a store read is in flight
        self.again = False         # read once more when it returns (something new may be missing)
        self.draining = False      # a check: read on until the store has nothing more
        self.grace_call = None     # the read after GAP_GRACE
        self.retry_call = None     # the read after READ_RETRY
        self.hold_call = None      # giving up after HOLD_MAX

    def cancel_timers(self) -> None:
        for name in ("grace_call", "retry_call", "hold_call"):
            call = getattr(self, name)
            if call is not None and call.active():
                call.cancel()
            setattr(self, name, None)


class Fanout:
    """Reference-counted subscriptions shared by every legacy socket of the worker.

    A topic is subscribed when its first socket joins and unsubscribed when its last one
    leaves. Each event is framed once and the same bytes are written to every socket.

    :param bridge: subscribes (``subscribe(handler, topic)``) and reports the session's
        (re)joins and losses (``on_join``, ``on_lost``)
    :param prepare: frames a text payload once (``WebSocketServerFactory.prepareMessage``)
    :param reader: reads missed envelopes from the store; ``None``: no gap fill (events are
        still delivered in order and once; a gap is given up at once)
    :param links: this node's link state; when a link comes back, every topic is checked
    :param clock: the reactor (a ``task.Clock`` in tests)
    """

    log = txaio.make_logger()

    def __init__(self, bridge: SlotBridge, prepare: Callable[[bytes], PreparedMessage],
                 reader: Optional[Reader] = None, links: Optional[LinkState] = None,
                 clock: Any = default_reactor, receipts: Optional[Written] = None) -> None:
        self._bridge = bridge
        self._receipts = receipts
        self._prepare = prepare
        self._reader = reader
        self._clock = clock
        self._topics: Dict[str, _Topic] = {}
        # bumped when the session is lost: answers to the old session's requests are stale
        self._generation = 0
        #: what the gap fill did, for tests and metrics
        self.recovery = {"filled": 0, "duplicates": 0, "skipped": 0, "gaps": 0}
        self._logged: Dict[str, float] = {}      # kind of store trouble -> when last logged
        self._unlogged: Dict[str, int] = {}      # ... and how many since
        bridge.on_join(self._rejoined)
        bridge.on_lost(self._lost)
        if links is not None:
            links.on_up(self._link_up)

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
            entry.readers = None
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
            entry.readers = None
            if entry.sockets or entry.pending:
                continue  # a pending subscribe cleans up when it completes
            self._drop(topic, entry)

    def _drop(self, topic: str, entry: _Topic) -> None:
        if self._topics.get(topic) is entry:
            del self._topics[topic]
        entry.cancel_timers()
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
        resubscribing = entry.order is not None

        def subscribe(_=None):
            if generation != self._generation:
                return
            if self._bridge.session is None:
                entry.pending = False  # lost meanwhile: _rejoined subscribes again
                return
            self._bridge.subscribe(partial(self._deliver, topic), topic).addCallbacks(done, failed)

        def done(subscription):
            if generation != self._generation:
                return  # the session was lost meanwhile; _rejoined subscribes again
            entry.pending = False
            entry.subscription = subscription
            if not entry.sockets:
                self._drop(topic, entry)
                return
            self._fire(entry, None)
            if resubscribing:
                self._check(topic, entry)  # events may have gone by while the session was away

        def failed(failure):
            if generation != self._generation:
                return
            entry.pending = False
            self.log.warn("deptcast legacy: cannot subscribe {topic}: {e}", topic=topic,
                          e=failure.getErrorMessage())
            self._fire(entry, failure)
            if not entry.sockets and self._topics.get(topic) is entry:
                entry.cancel_timers()
                del self._topics[topic]

        if resubscribing:
            subscribe()
        else:
            self._start_numbering(topic, entry).addCallback(subscribe)

    def _start_numbering(self, topic: str, entry: _Topic) -> defer.Deferred:
        """Learn where ``topic``'s numbering stands *before* subscribing: every envelope
        numbered higher is one the sockets must get (live, or read from the store)."""
        entry.order = TopicSequence()
        if self._reader is None:
            return defer.succeed(None)

        def known(heads):
            if entry.order is not None and entry.order.next is None:
                entry.order.next = heads.get(topic, 0) + 1

        def unknown(failure):
            # the first event will set the numbering; a gap before it cannot be noticed
            self._store_trouble("head", "deptcast legacy: no store head for {topic} ({e}); numbering from its "
                                "first event", topic=topic, e=failure.getErrorMessage())
        d = self._reader.heads([topic], HEAD_TIMEOUT)
        return d.addCallbacks(known, unknown)

    def _rejoined(self, session) -> None:
        for topic, entry in list(self._topics.items()):
            if entry.sockets:
                self._subscribe(topic, entry)
            else:
                entry.cancel_timers()
                del self._topics[topic]
        if self._topics:
            self.log.info("deptcast legacy: resubscribing {n} topics", n=len(self._topics))

    def _lost(self) -> None:
        self._generation += 1
        for entry in self._topics.values():
            entry.subscription = None
            entry.pending = False

    # ------------------------------------------------------------------ delivery, in seq order

    def _deliver(self, topic: str, envelope: Any = None, *args: Any, **kwargs: Any) -> None:
        """An event from the router."""
        entry = self._topics.get(topic)
        if entry is None or not entry.sockets:
            return
        self._offer(topic, entry, [envelope])
        if entry.order is not None and entry.order.has_gap:
            self._gap_seen(topic, entry)
        elif entry.hold_call is not None and not entry.reading:
            self._gap_closed(entry)  # the late ones arrived live

    def _offer(self, topic: str, entry: _Topic, envelopes: Iterable[Any]) -> int:
        """Pass envelopes (live or from the store) through the topic's numbering; send what
        may go out now. Returns how many were sent."""
        if entry.order is None:
            entry.order = TopicSequence()
        sent = 0
        before = entry.order.duplicates
        for envelope in envelopes:
            for ready in entry.order.offer(seq_of(envelope), envelope):
                self._send(topic, entry, ready)
                sent += 1
        self.recovery["duplicates"] += entry.order.duplicates - before
        return sent

    def _gap_seen(self, topic: str, entry: _Topic) -> None:
        if self._reader is None:
            self._give_up(topic, entry)
            return
        if entry.hold_call is None:
            self.recovery["gaps"] += 1
            entry.hold_call = self._clock.callLater(HOLD_MAX, self._give_up, topic, entry)
        if entry.reading:
            entry.again = True
        elif entry.grace_call is None and entry.retry_call is None:
            entry.grace_call = self._clock.callLater(GAP_GRACE, self._grace_over, topic, entry)

    def _grace_over(self, topic: str, entry: _Topic) -> None:
        entry.grace_call = None
        if entry.order is not None and entry.order.has_gap:
            self._read(topic, entry)

    def _check(self, topic: str, entry: _Topic) -> None:
        """Read what may have been missed on ``topic`` although no gap showed."""
        if self._reader is None or entry.order is None or entry.order.next is None:
            return
        entry.draining = True
        if entry.reading:
            entry.again = True
        else:
            self._read(topic, entry)

    def _read(self, topic: str, entry: _Topic) -> None:
        if entry.grace_call is not None and entry.grace_call.active():
            entry.grace_call.cancel()
        entry.grace_call = None
        if self._topics.get(topic) is not entry or entry.order is None or entry.order.next is None:
            return
        entry.reading = True
        entry.again = False
        after = entry.order.next - 1

        def read(rows):
            entry.reading = False
            if self._topics.get(topic) is not entry:
                return
            sent = self._offer(topic, entry, rows)
            self.recovery["filled"] += sent
            if sent:
                self.log.debug("deptcast legacy: {n} missed messages on {topic} read from the store",
                               n=sent, topic=topic)
            if not sent:
                entry.draining = False
            # a page is bounded by rows and by bytes: read on while reads bring something and a
            # gap remains (or a check wants everything), or something new went missing meanwhile
            if len(rows) >= READ_PAGE or entry.again or (sent and (entry.order.has_gap or entry.draining)):
                self._read(topic, entry)
            elif entry.order.has_gap:
                # the store does not have them (yet): try again until HOLD_MAX
                entry.retry_call = self._clock.callLater(READ_RETRY, self._retry, topic, entry)
            else:
                self._gap_closed(entry)

        def failed(failure):
            entry.reading = False
            if self._topics.get(topic) is not entry:
                return
            self._store_trouble("read", "deptcast legacy: cannot read missed messages on {topic} yet: {e}",
                                topic=topic, e=failure.getErrorMessage())
            if entry.order.has_gap or entry.again:
                entry.retry_call = self._clock.callLater(READ_RETRY, self._retry, topic, entry)
        self._reader.since(topic, after, READ_PAGE).addCallbacks(read, failed)

    def _retry(self, topic: str, entry: _Topic) -> None:
        entry.retry_call = None
        self._read(topic, entry)

    def _gap_closed(self, entry: _Topic) -> None:
        for name in ("hold_call", "grace_call"):
            call = getattr(entry, name)
            if call is not None and call.active():
                call.cancel()
            setattr(entry, name, None)

    def _give_up(self, topic: str, entry: _Topic) -> None:
        """Deliver what is held and carry on after it: the missing messages are lost to the
        pages (the store could not be read for :data:`HOLD_MAX` seconds)."""
        entry.hold_call = None
        if entry.order is None or not entry.order.has_gap:
            return
        if entry.retry_call is not None and entry.retry_call.active():
            entry.retry_call.cancel()
        entry.retry_call = None
        missing = entry.order.missing()
        skipped = entry.order.skipped
        for ready in entry.order.give_up():
            self._send(topic, entry, ready)
        self.recovery["skipped"] += entry.order.skipped - skipped
        if self._reader is not None:
            self._store_trouble("give-up", "deptcast legacy: gave up on messages {first}-{last} of {topic} after "
                                "{s:g} s (the store did not answer); newer ones delivered", warn=True,
                                first=missing[0], last=missing[1], topic=topic, s=HOLD_MAX)

    def _store_trouble(self, kind: str, text: str, warn: bool = False, **fields: Any) -> None:
        """Log store trouble at most once per :data:`LOG_EVERY` seconds per kind (an outage
        touches every topic), with how many like it were not logged since."""
        now = self._clock.seconds()
        if now - self._logged.get(kind, -LOG_EVERY) < LOG_EVERY:
            self._unlogged[kind] = self._unlogged.get(kind, 0) + 1
            return
        self._logged[kind] = now
        more = self._unlogged.pop(kind, 0)
        if more:
            text += f" ({more} more like it in the last {LOG_EVERY:g} s)"
        (self.log.warn if warn else self.log.info)(text, **fields)

    def _link_up(self, peer: str) -> None:
        """This node's link to ``peer`` is back: events published there meanwhile never came.
        Ask the store which topics moved past what the sockets got, and read those."""
        known = {t: e for t, e in self._topics.items()
                 if e.sockets and e.order is not None and e.order.next is not None}
        if not known or self._reader is None:
            return

        def compare(heads):
            behind = [t for t, e in known.items()
                      if self._topics.get(t) is e and e.order.next is not None and heads.get(t, 0) >= e.order.next]
            if behind:
                self.log.info("deptcast legacy: link to {peer} is back; reading missed messages of "
                              "{n} topic(s) from the store", peer=peer, n=len(behind))
            for t in behind:
                self._check(t, known[t])

        def failed(failure):
            self.log.warn("deptcast legacy: link to {peer} is back but the store cannot say what was missed: "
                          "{e}", peer=peer, e=failure.getErrorMessage())
        self._reader.heads(sorted(known), HEAD_TIMEOUT).addCallbacks(compare, failed)

    def _record(self, entry: _Topic, sockets: Tuple[Socket, ...], failed: Optional[Set[Socket]],
                envelope_id: Any) -> None:
        """Receipts: who the event was written to, once per event (the topic's readers, kept
        between joins and leaves; only when a write failed are the sockets looked at again)."""
        assert self._receipts is not None  # checked by the caller
        if failed is None:
            readers = entry.readers
            if readers is None:
                readers = entry.readers = _readers(entry.sockets)
        else:
            readers = _readers(s for s in sockets if s not in failed)
        if readers:
            self._receipts.written(envelope_id, readers)

    def _send(self, topic: str, entry: _Topic, envelope: Any) -> None:
        payload = legacyframes.message_frame(envelope)
        if payload is None:
            self.log.warn("deptcast legacy: an event on {topic} has no message text; not forwarded", topic=topic)
            return
        prepared = self._prepare(payload)
        # a copy: a write may fail and close a socket, which leaves the set
        written = 0
        sockets = tuple(entry.sockets)
        failed: Optional[Set[Socket]] = None
        for sock in sockets:
            if sock.deliver(prepared):
                written += 1
            elif failed is None:
                failed = {sock}
            else:
                failed.add(sock)
        if self._receipts is not None and written and isinstance(envelope, dict):
            self._record(entry, sockets, failed, envelope.get("id"))
        if written:
            LEGACY_DELIVERIES.inc(written)  # once per event: the counter takes a lock


def _readers(sockets: Iterable[Any]) -> Tuple[Tuple[str, str], ...]:
    """The (dept, user) of the token-checked sockets among ``sockets`` (open mode has none)."""
    return tuple(who for sock in sockets if (who := getattr(sock, "receipt_user", None)) is not None)
