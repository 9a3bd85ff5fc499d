"""Receipts, the client's part: what it tells the node it received (``delivered``, by itself,
for every envelope it hands to the application, live or from history) and what the
application says its user saw (``seen``); and the live counts of the notices the user sent.

Acknowledgements go in batches (:class:`AckQueue`), as the browser client sends them
(``web/receipts.js``):

- at most one ``deptcast.ack(ids, state)`` call a second on a session, one at a time, at most
  :data:`ACK_BATCH` ids each; the ids wait for the next call meanwhile, and across a reconnect;
- a call that failed for a reason that passes (``unavailable``, ``rate_limited`` after its
  ``retry_after``, a lost connection) puts its ids back in front;
- a node that does not offer the procedure turns acknowledging off for that session (the next
  session, maybe on a newer node, tries again); what waited is dropped;
- any other refusal drops that batch. Receipts are best effort: delivery never waits for them.
"""

from collections import OrderedDict
from typing import Any, Callable, Dict, Iterable, List, Optional

import txaio
from autobahn.wamp.exception import ApplicationError, TransportLost

from components.client import contract
from components.client.stats import Stats
from components.client.timers import CallLater, cancel
from components.core.errors import RATE_LIMITED, UNAVAILABLE
from components.core.retry import rate_limit_wait

#: at most one deptcast.ack call this often (seconds)
ACK_INTERVAL = 1.0
#: at most this many ids in one deptcast.ack call
ACK_BATCH = 1000
#: at most this many ids wait per state; the oldest go first when a client is offline long
ACK_BACKLOG = 20000
#: the longest id taken
MAX_ID_CHARS = 64


class AckQueue:
    """Sends acknowledgements in batches on the current session (see the module).

    :param now: monotonic seconds
    :param call_later: the framework's timer
    :param stats: the client's counts (``acks``, ``acked``)
    :param log: the client's logger
    """

    def __init__(self, now: Callable[[], float], call_later: CallLater, stats: Stats, log: Any,
                 interval: float = ACK_INTERVAL, batch: int = ACK_BATCH, backlog: int = ACK_BACKLOG) -> None:
        self._now = now
        self._call_later = call_later
        self.stats = stats
        self.log = log
        self._interval = interval
        self._batch = batch
        self._backlog = backlog
        self._waiting: Dict[str, "OrderedDict[str, None]"] = {contract.DELIVERED: OrderedDict(),
                                                               contract.SEEN: OrderedDict()}
        self._session: Any = None
        self._off = False
        self._stopped = False
        self._in_flight = False
        self._timer: Any = None
        self._not_before = float("-inf")
        self._last = contract.SEEN

    # -- what the engine says

    def add(self, ids: Iterable[Any], state: str) -> None:
        """Queue ``ids`` in ``state`` (``"delivered"`` or ``"seen"``)."""
        waiting = self._waiting[state]
        if self._off or self._stopped:
            return
        for envelope_id in ids:
            if isinstance(envelope_id, str) and 0 < len(envelope_id) <= MAX_ID_CHARS:
                waiting[envelope_id] = None
        while len(waiting) > self._backlog:
            waiting.popitem(last=False)
        self._kick()

    def joined(self, session: Any) -> None:
        """A session to send on (a new one: a node that did not offer acknowledging is asked again)."""
        self._session = session
        self._off = False
        self._in_flight = False
        self._not_before = float("-inf")  # the pace is per session
        self._kick()

    def lost(self) -> None:
        """No session: the ids wait for the next one."""
        self._session = None
        self._stop_timer()

    def stop(self) -> None:
        """The client stopped: nothing more is sent."""
        self._stopped = True
        self.lost()

    @property
    def size(self) -> int:
        """How many ids wait, in all."""
        return sum(len(w) for w in self._waiting.values())

    @property
    def off(self) -> bool:
        """Whether the current session's node takes no acknowledgements."""
        return self._off

    # -- sending

    def _stop_timer(self) -> None:
        if self._timer is not None:
            cancel(self._timer)
        self._timer = None

    def _kick(self) -> None:
        if self._session is None or self._off or self._stopped or self._in_flight or self._timer is not None:
            return
        if not self.size:
            return
        self._timer = self._call_later(max(0.0, self._not_before - self._now()), self._flush)

    def _flush(self) -> None:
        self._timer = None
        session = self._session
        if session is None or self._off or self._stopped or self._in_flight:
            return
        other = contract.DELIVERED if self._last == contract.SEEN else contract.SEEN
        state = other if self._waiting[other] else self._last
        waiting = self._waiting[state]
        if not waiting:
            return
        ids: List[str] = []
        while waiting and len(ids) < self._batch:
            ids.append(waiting.popitem(last=False)[0])
        self._last = state
        self._in_flight = True
        self._not_before = self._now() + self._interval
        try:
            pending = session.call(contract.PROC_ACK, ids, state)
        except TransportLost:
            self._put_back(state, ids)
            self._in_flight = False
            return
        txaio.add_callbacks(pending, lambda _: self._sent(session, ids),
                            lambda failure: self._refused(session, state, ids, failure))

    def _sent(self, session: Any, ids: List[str]) -> None:
        self.stats.acks += 1
        self.stats.acked += len(ids)
        self._done(session)

    def _refused(self, session: Any, state: str, ids: List[str], failure: Any) -> None:
        error = getattr(failure, "value", failure)
        uri: Optional[str] = error.error if isinstance(error, ApplicationError) else None
        if uri is not None and contract.not_offered(uri):
            if session is self._session:
                self._off = True
                for waiting in self._waiting.values():
                    waiting.clear()
                self.log.info("deptcast client: this node takes no receipts ({uri}); not acknowledging on this "
                              "session", uri=uri)
        elif uri is None or uri in (UNAVAILABLE, RATE_LIMITED) or uri.startswith("wamp.close."):
            self._put_back(state, ids)
            if uri == RATE_LIMITED:
                kwargs = error.kwargs or {}
                self._not_before = self._now() + rate_limit_wait(kwargs.get("retry_after"))
        else:
            self.log.warn("deptcast client: deptcast.ack refused {n} ids ({uri}); dropped", n=len(ids), uri=uri)
        self._done(session)
        return None

    def _put_back(self, state: str, ids: List[str]) -> None:
        """In front, oldest first: they go with the next call."""
        waiting = self._waiting[state]
        for envelope_id in reversed(ids):
            waiting[envelope_id] = None
            waiting.move_to_end(envelope_id, last=False)

    def _done(self, session: Any) -> None:
        if session is self._session:
            self._in_flight = False
            self._kick()
