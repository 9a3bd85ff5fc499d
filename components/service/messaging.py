"""The one path every message takes, whichever way it arrives (``deptcast.send``, a legacy
frame, ``POST /api/send``): validate, authorize, rate-limit, hold while the links come up,
store, publish. And ``deptcast.history`` on the same store, rate-limited per user as sends
are (a bucket of its own: paging through history does not use up a user's sends).

The WAMP procedures (:mod:`components.wamp.api`) and the web transport's resources
(:mod:`components.edge`) are thin adapters over :class:`MessageService`; all of them run in
the router worker, so a legacy frame reaches the store and the router without leaving the
process.
"""

import functools
import time
from typing import Any, Callable, Dict, List, Optional, Protocol, Sequence, Tuple

from twisted.internet import defer, task
from twisted.python.failure import Failure
import txaio

from components.core.errors import INVALID_FRAME, RATE_LIMITED, UNAVAILABLE, Refused
from components.core import names
from components.core.history import DEFAULT_PAGE, HistoryRequest, answer_cap, history_request
from components.core.messages import check_send
from components.core.metrics import SENDS_ACCEPTED, SENDS_REFUSED, reason_of
from components.core.retention import PrunedHistory, pruned_refusal
from components.core.ratelimit import RateLimiter
from components.core.sendkeys import Outgoing, Stored, check_key, key_conflict
from components.core.settings import Settings
from components.core.targets import envelope_topic
from components.core.tokens import Identity
from components.service.metrics import counted_send, timed_history
from components.service.refusals import RefusalLog
from components.store.threaded import StoreUnavailable, ThreadedStore

txaio.use_twisted()  # a Twisted module: its txaio loggers are Twisted's

#: the fields of a ``deptcast.send_batch`` item
BATCH_ITEM_FIELDS = frozenset({"to", "message", "key"})
#: what a caller hears while the store is down, frozen or locked (never why: no host names)
STORE_DOWN = "the message store is not answering; retry in a few seconds"
#: seconds before a ``rate_limited`` refusal is answered: a client that calls again at once
#: (in a loop, from several sessions) is paced instead of costing the node thousands of
#: refusals a second (measured in bench/fairness.py)
RATE_LIMITED_PACE = 0.25


class Gate(Protocol):
    """Holds sends while a starting cluster node's links come up (see :mod:`components.wamp.linkgate`)."""

    @property
    def is_open(self) -> bool: ...

    def wait(self) -> defer.Deferred: ...


class OpenGate:
    """The gate of a node without peers: always open."""

    is_open = True

    def wait(self) -> defer.Deferred:
        return defer.succeed(None)


#: publishes ``envelope`` on ``topic``; the Deferred fires once the router has taken it
Publish = Callable[[str, Dict[str, Any]], defer.Deferred]


def _counted(kind: str) -> Callable:
    """Count the refusals of a service call (``self._refusals[kind]``) instead of a log line
    each, whichever interface it came from; an unexpected failure is counted too (its first
    traceback logged) and answered ``unavailable``, never a traceback per call. A
    ``rate_limited`` refusal is answered after :data:`RATE_LIMITED_PACE`."""
    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(self: "MessageService", identity: Identity, *args: Any, **kwargs: Any) -> defer.Deferred:
            def count(failure):
                refusals: RefusalLog = self._refusals[kind]
                if failure.check(Refused):
                    refusals.refused(failure.value.uri, identity.key, failure.value.detail)
                    if failure.value.uri == RATE_LIMITED:
                        return task.deferLater(self._clock, RATE_LIMITED_PACE, lambda: failure)
                    return failure
                refusals.failed(failure, identity.key)
                raise Refused(UNAVAILABLE, "the node cannot answer right now; retry shortly", retry_after=2)
            return fn(self, identity, *args, **kwargs).addErrback(count)
        return wrapper
    return decorate


def _only(results: List[Any]) -> Any:
    """The one result of a single send: its envelope, or its refusal raised."""
    if isinstance(results[0], Refused):
        raise results[0]
    return results[0]


class MessageService:
    """Send and history for one node.

    :param settings: limits (message size, history page cap, rate and burst)
    :param store: the node's store
    :param publish: how an accepted envelope reaches the router
    :param gate: the link hold of a cluster node
    :param now: wall-clock seconds (envelope timestamps); ``monotonic``: the rate limiter's clock
    :param clock: the reactor (the refusal summaries' timer, the pace of ``rate_limited``
        answers), or a ``task.Clock`` in tests
    """

    log = txaio.make_logger()

    def __init__(self, settings: Settings, store: ThreadedStore, publish: Publish, gate: Optional[Gate] = None,
                 now: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic,
                 clock: Any = None) -> None:
        self._settings = settings
        self._store = store
        self._publish = publish
        self._gate: Gate = gate or OpenGate()
        self._now = now
        self._monotonic = monotonic
        self._limiter = RateLimiter(settings.rate, settings.burst)
        # backends (publisher and admin accounts) have a bucket of their own
        self._publisher_limiter = RateLimiter(settings.publisher_rate, settings.publisher_burst)
        # each answer may carry ~1 MiB read from the store: bound how often a user asks
        self._history_limiter = RateLimiter(settings.history_rate, settings.history_burst)
        if clock is None:
            from twisted.internet import reactor as clock  # (at the top, the import would install the reactor)
        self._clock = clock
        self._refusals = {"send": RefusalLog(self.log, "deptcast messages", "send", "sends", clock),
                          "history": RefusalLog(self.log, "deptcast messages", "history call", "history calls", clock)}
        #: whether the store's schema is in place (the api migrates it in the background)
        self.store_ready = False

    @property
    def store(self) -> ThreadedStore:
        """The node's store (for the store probe and retention)."""
        return self._store

    @property
    def gate(self) -> Gate:
        """The link hold (whether sends are accepted now)."""
        return self._gate

    def _check_store(self) -> None:
        if not self.store_ready:
            raise Refused(UNAVAILABLE, "the node is starting: its message store is not ready yet; "
                                       "retry in a few seconds", retry_after=2)

    def _limiter_for(self, identity: Identity) -> Tuple[RateLimiter, float, int]:
        """The bucket of ``identity``'s role: publishers and admins (backends, announcers) have
        their own rate, so that a backend gets what it needs without lifting people's."""
        if identity.role in (names.PUBLISHER, names.ADMIN):
            return self._publisher_limiter, self._settings.publisher_rate, self._settings.publisher_burst
        return self._limiter, self._settings.rate, self._settings.burst

    def _rate_refusal(self, identity: Identity) -> Refused:
        _, rate, burst = self._limiter_for(identity)
        return Refused(RATE_LIMITED, f"more than {burst} messages in a burst; slow down to {rate:g} per second")

    @counted_send
    @_counted("send")
    def send(self, identity: Identity, to: Any, message: Any, key: Any = None) -> defer.Deferred:
        """Send ``message`` to ``to`` as ``identity``; fire with the envelope. (The adapters
        pass ``interface="legacy"`` or ``"http"``, counted by :func:`counted_send`.)

        With a ``key``, a retry is safe: the same sender and key within a day are answered
        the first envelope, nothing stored or published again (see :meth:`send_many`).

        :raises Refused: with the contract's URI; nothing refused is stored or published
        """
        return self.send_many(identity, [(to, message, key)]).addCallback(_only)

    @_counted("send")
    @defer.inlineCallbacks
    def send_batch(self, identity: Identity, items: Any):
        """``deptcast.send_batch``: up to :data:`~components.core.names.SEND_BATCH_MAX`
        items ``{"to", "message", "key"?}``; fire with one result per item, in order: the
        envelope or ``{"error": <uri>, "detail": <text>}``.

        :raises Refused: ``invalid_frame`` if ``items`` is not a list of at most
            ``SEND_BATCH_MAX``; ``unavailable`` if the store is (nothing of the batch was stored)
        """
        if not isinstance(items, (list, tuple)):
            raise Refused(INVALID_FRAME, "items must be a list of {to, message, key?} objects")
        if len(items) > names.SEND_BATCH_MAX:
            raise Refused(INVALID_FRAME, f"at most {names.SEND_BATCH_MAX} items per call ({len(items)} given)")
        requests: List[Any] = []
        for item in items:
            if isinstance(item, dict) and set(item) <= BATCH_ITEM_FIELDS:
                requests.append((item.get("to"), item.get("message"), item.get("key")))
            else:
                requests.append(Refused(INVALID_FRAME, "an item is an object {to, message, key?}"))
        results = yield self.send_many(identity, requests)
        out = []
        for result in results:
            if isinstance(result, Refused):
                self._refusals["send"].refused(result.uri, identity.key, result.detail)
                SENDS_REFUSED.labels("batch", reason_of(result.uri)).inc()
                out.append({"error": result.uri, "detail": result.detail})
            else:
                SENDS_ACCEPTED.labels("batch").inc()
                out.append(result)
        return out

    @defer.inlineCallbacks
    def send_many(self, identity: Identity, requests: Sequence[Any]):
        """The send path of one call: ``requests`` are ``(to, message, key)`` (or a
        :class:`Refused` already); fire with one envelope or :class:`Refused` each, in order.

        Each request is validated and authorized alone; the valid ones take a token each from
        the sender's bucket (the first ones that fit go, the rest are ``rate_limited``; a
        keyed one over the limit whose key is stored is answered its envelope, as a retry
        costs nothing); then all of them are stored in one group commit and the fresh ones
        published. A request answered a stored envelope gives its token back.

        :raises Refused: ``unavailable`` (the node is starting, or the store is down: nothing
            was stored)
        """
        ts = int(self._now() * 1000)
        prepared: List[Any] = []
        for request in requests:
            if isinstance(request, Refused):
                prepared.append(request)
                continue
            to, message, key = request
            try:
                target = check_send(identity, to, message, self._settings.max_message_bytes)
                prepared.append(Outgoing(target, identity, message, ts, check_key(key)))
            except Refused as e:
                prepared.append(e)
        valid = [n for n, p in enumerate(prepared) if isinstance(p, Outgoing)]
        limiter, _, _ = self._limiter_for(identity)
        granted = limiter.take(identity.key, self._monotonic(), len(valid))
        over, going = valid[granted:], valid[:granted]
        if over:
            yield self._answer_over_limit(identity, prepared, over)
        if not going:
            return prepared
        if not self.store_ready:
            limiter.refund(identity.key, len(going))
            self._check_store()
        if not self._gate.is_open:
            yield self._gate.wait()
        try:
            stored: List[Stored] = yield self._store.append_many([prepared[n] for n in going],
                                                                on_late=self._publish_late_many)
        except StoreUnavailable:
            limiter.refund(identity.key, len(going))
            raise Refused(UNAVAILABLE, STORE_DOWN, retry_after=2) from None
        refunds = 0
        published = []
        for n, result in zip(going, stored):
            outgoing = prepared[n]
            if result.envelope is None:
                prepared[n] = key_conflict(outgoing.key)
                refunds += 1
            else:
                prepared[n] = result.envelope
                if result.fresh:
                    published.append(self._publish(outgoing.target.topic, result.envelope))
                else:
                    refunds += 1
        limiter.refund(identity.key, refunds)
        # (the node's own publishes answer at once: wait only for one that has not)
        if any(not d.called or isinstance(d.result, Failure) for d in published):
            yield defer.gatherResults(published, consumeErrors=True)
        return prepared

    @defer.inlineCallbacks
    def _answer_over_limit(self, identity: Identity, prepared: List[Any], over: Sequence[int]):
        """Answer the requests past the sender's bucket: ``rate_limited``, but a keyed one
        whose key is stored gets its first envelope (a retry costs no rate)."""
        keyed = {prepared[n].key for n in over if prepared[n].key}
        found: Dict[str, Any] = {}
        if keyed and self.store_ready:
            try:
                found = yield self._store.sent_keys(identity, sorted(keyed))
            except StoreUnavailable:
                found = {}
        for n in over:
            outgoing = prepared[n]
            if outgoing.key in found:
                fp, envelope = found[outgoing.key]
                prepared[n] = envelope if fp == outgoing.fingerprint else key_conflict(outgoing.key)
            else:
                prepared[n] = self._rate_refusal(identity)

    def _publish_late(self, envelope: Dict[str, Any]) -> None:
        # the sender was told "unavailable", but the store committed the message after all
        # (the store froze during the commit): it is in history, so its subscribers get it
        # live too (a retry with the same key is answered this envelope)
        d = defer.maybeDeferred(self._publish, envelope_topic(envelope), envelope)
        d.addErrback(lambda f: self.log.warn("deptcast api: could not publish a late-stored message: {e}",
                                             e=f.getErrorMessage()))

    def _publish_late_many(self, stored: List[Stored]) -> None:
        for result in stored:
            if result.fresh and result.envelope is not None:
                self._publish_late(result.envelope)

    @timed_history
    @_counted("history")
    @defer.inlineCallbacks
    def history(self, identity: Identity, after: Any = None, limit: Any = DEFAULT_PAGE, latest: Any = False,
                positions: Any = None):
        """What ``identity`` may see, oldest first (see ``deptcast.history``): after the id
        ``after``, or past the ``positions`` ``{topic: last seq}``.

        :raises Refused: ``invalid_frame`` for malformed arguments, ``not_authorized`` for a
            position on a topic the caller may not read, ``rate_limited`` past the user's
            history burst, ``pruned`` for a position older than what retention kept
        """
        request = history_request(names.client_topics(identity.dept, identity.user), after, limit, latest,
                                  positions, cap=self._settings.history_limit,
                                  max_bytes=answer_cap(self._settings.max_message_bytes))
        if not self._history_limiter.allow(identity.key, self._monotonic()):
            raise Refused(RATE_LIMITED, f"more than {self._settings.history_burst} history calls in a burst; "
                                        f"slow down to {self._settings.history_rate:g} per second")
        self._check_store()
        if not self._gate.is_open:
            yield self._gate.wait()
        try:
            rows: List[Dict[str, Any]] = yield self._store.history(request)
        except StoreUnavailable:
            raise Refused(UNAVAILABLE, STORE_DOWN, retry_after=2) from None
        except PrunedHistory as e:
            raise pruned_refusal(e.gone) from None
        return rows

    # -- what the node itself reads back: a subscriber of its own (the legacy fan-out) that
    #    missed events on a topic, e.g. while a link to a peer was down

    def topic_since(self, topic: str, seq: int, limit: int = DEFAULT_PAGE) -> defer.Deferred:
        """The envelopes on ``topic`` with a ``seq`` above ``seq``, in ``seq`` order: at most
        ``limit`` of them (and about a megabyte of messages; read on from the last one).

        No identity, no hold: the node reads for its own subscribers, which are authorized
        for ``topic`` already.

        :rtype: Deferred
        """
        return self._store.history(HistoryRequest(topics=(topic,), positions={topic: seq}, limit=limit))

    def topic_heads(self, topics: Sequence[str]) -> defer.Deferred:
        """Fire with ``{topic: seq of its newest envelope}`` for ``topics`` (0 for a topic
        without any).

        :rtype: Deferred
        """
        d = self._store.heads(topics)
        return d.addCallback(lambda found: {t: found.get(t, 0) for t in topics})
