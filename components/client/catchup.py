"""Catching up from history on one session: where a client with no position starts, the
reads past its positions (at a join, and for a gap that stayed open), and what it does when
the node refuses a read (``pruned``: retention removed what follows a position;
``rate_limited``; ``unavailable``). The rules are :mod:`components.core.recovery` and
:mod:`components.core.positionsearch`; this is where they meet the ``deptcast.history``
calls. The :class:`~components.client.engine.Engine` runs one :class:`CatchUp` for its
whole life, across sessions.
"""

from typing import Any, Callable, Dict, List, Optional, Protocol, Set

from autobahn.wamp.exception import ApplicationError, TransportLost

from components.client.delivery import Delivery
from components.client.errors import DeptcastError, InvalidFrame, NotAuthorized, Pruned, RateLimited, as_error
from components.client.stats import Stats
from components.client.timers import CallLater, sleep
from components.core import names
from components.core.positionsearch import KeptSearch, StartSearch, fresh_start
from components.core.recovery import HISTORY_PAGE, MAX_PRUNED_IN_A_ROW, START_PAGE, Recovery
from components.core.retry import backoff, rate_limit_wait

class Host(Protocol):
    """What a catch-up asks of the engine that runs it."""

    @property
    def generation(self) -> int:
        """The number of the session joined last: a read of an older one stops."""

    @property
    def fatal(self) -> Optional[BaseException]:
        """The error that stopped the client for good, if one did."""

    def fail(self, error: BaseException) -> None:
        """Stop the client for good."""


class CatchUp:
    """Reads history for a subscriber whose positions :attr:`recovery` keeps.

    :param host: the engine (its current session's number, whether it has stopped)
    :param recovery: the subscriber's rules and positions
    :param delivery: where released envelopes go
    :param log: the client's logger
    :param now: monotonic seconds
    :param call_later: the framework's timer
    :param page: envelopes asked per history call
    :param history: how many of the newest envelopes a first start hands over
    :param first_start: ``"now"`` or ``"page"`` (see :class:`~components.client.engine.Engine`)
    """

    def __init__(self, host: Host, recovery: Recovery, delivery: Delivery, log: Any, now: Callable[[], float],
                 call_later: CallLater, page: int = HISTORY_PAGE, history: int = 0,
                 first_start: str = "now") -> None:
        self._host = host
        self.recovery = recovery
        self.delivery = delivery
        self.stats: Stats = delivery.stats
        self.log = log
        self._now = now
        self._call_later = call_later
        self._page = page
        self._history = history
        self._first_start = first_start
        self._fill_generation: Optional[int] = None
        self._replayed = False
        #: the generation (session) whose first rate-limited history call was logged at info
        self._rate_limit_logged: Optional[int] = None

    def sync_counts(self) -> None:
        """Bring the duplicates and skipped seqs of :attr:`stats` up to date."""
        self.stats.duplicates = self.recovery.duplicates
        self.stats.skipped = self.recovery.skipped

    async def start(self, session: Any, generation: int) -> Optional[Set[str]]:
        """A topic without a saved position starts now: what history holds is from before.
        Returns the topics whose start the newest page gave (a read refused as pruned right
        after it looks at the others), or ``None`` if the session was lost before every topic
        had its start."""
        recovery = self.recovery
        first_start = recovery.unknown() == list(recovery.topics)
        # the newest few are shown once, even if this start is cut short and runs again
        replay = self._history if first_start and not self._replayed else 0
        page = await self._history_call(session, generation, latest=True, limit=max(replay, START_PAGE))
        if page is None:
            return None
        if self._first_start == "page" and first_start:
            replay = len(page)
        # the whole page says where the start is; only the topics without a position take it
        # (start_at ignores a topic that has one)
        shown, starts, newest, rest = fresh_start(page, recovery.topics, replay)
        from_page = {t for t in starts if t in recovery.unknown()}
        rest = [t for t in rest if t in recovery.unknown()]
        if self._first_start == "page":
            starts.update({topic: 0 for topic in rest})  # read from the beginning
            rest = []
        recovery.remember(shown)
        self._replayed = True
        self.delivery.show(shown)
        for topic, seq in starts.items():
            self.delivery.emit(recovery.start_at(topic, seq, self._now()))
        for topic in rest:
            assert newest is not None  # only an empty page has none, and it leaves no topic to search
            search = StartSearch(topic, newest)
            for envelope in recovery.held_envelopes(topic):
                search.learn(envelope)
            while not search.done:
                asked = search.next_position()
                try:
                    answer = await self._history_call(session, generation, positions={topic: asked}, limit=1)
                except Pruned:
                    search.refused(asked)  # retention removed seq asked + 1: the start is past it
                    continue
                if answer is None:
                    return None
                search.answer(asked, answer)
            self.delivery.emit(recovery.start_at(topic, search.position, self._now()))
        self.delivery.keep(recovery.positions())
        self.log.info("deptcast client: starting after {positions}", positions=recovery.positions())
        return from_page

    async def fill(self, session: Any, generation: int, topics: Optional[List[str]], join: bool = False,
                   shown: Optional[Set[str]] = None) -> bool:
        """Read history past the positions of ``topics`` (all: ``None``) until an empty answer
        (``join``: the read of a join, after which the events held meanwhile go); a short
        answer is not the end (the node bounds answers by bytes too). A topic whose position
        reaches the seq just before its lowest live event held during the read is complete
        (everything after it arrived live, :meth:`~components.core.recovery.Recovery.lowest_held`)
        and is not asked again: on a busy topic an empty answer may never come; the read ends
        when no topic is left. ``False`` if it did not
        get to the end (the session was lost, or another read is under way). The counts of
        :attr:`stats` are brought up to date, whatever the outcome.

        A read refused as pruned (retention removed what follows a position) goes on from the
        newest page; refused again right after it, the topics that page did not show move to
        the first position the node accepts (``shown``: the topics of a newest page read just
        before this read, by a first start).

        :raises Pruned: after :data:`MAX_PRUNED_IN_A_ROW` refusals in a row
        """
        if self._fill_generation == generation:
            return False  # one read at a time; the timer looks again when it is done
        self._fill_generation = generation
        recovery = self.recovery
        mark = recovery.begin_fill()
        refusals = 0
        live_from: Dict[str, int] = {}  # per topic, the lowest seq of a live event held during the read
        reached: Set[str] = set()  # topics whose read is complete: the held live events continue it
        try:
            while True:
                asked = {t: p for t, p in recovery.positions().items()
                         if (topics is None or t in topics) and t not in reached}
                self._note_live(asked, live_from, reached)
                asked = {t: p for t, p in asked.items() if t not in reached}
                if not asked:
                    break
                try:
                    page = await self._history_call(session, generation, positions=asked, limit=self._page)
                except Pruned as refused:
                    refusals += 1
                    self.stats.pruned += 1
                    if refusals > MAX_PRUNED_IN_A_ROW:
                        raise
                    if refusals == 1:
                        self.log.warn("deptcast client: messages after this client's position were removed by "
                                      "the node's retention ({reason}); going on from the newest page",
                                      reason=refused.reason or refused.uri)
                    if shown is None:
                        shown = await self._newest_page(session, generation, list(asked))
                        if shown is None:
                            return False
                    else:
                        if not await self._find_kept(session, generation, [t for t in asked if t not in shown]):
                            return False
                        shown = None
                    continue
                shown = None
                refusals = 0
                if page is None:
                    return False
                if not page:
                    break
                self._note_live(asked, live_from, reached)  # before the page passes over held events
                self.delivery.arrived_from_history(page)
                self.delivery.emit(recovery.offer_page(page, self._now()))
            self.delivery.emit(recovery.end_fill(mark, topics, self._now(), join=join, reached=reached))
        finally:
            if self._fill_generation == generation:
                self._fill_generation = None
            self.sync_counts()
        return True

    def _note_live(self, asked: Dict[str, int], live_from: Dict[str, int], reached: Set[str]) -> None:
        """Note the lowest live event held per topic of ``asked``, and the topics whose
        position reached the seq just before it (their read is complete)."""
        positions = self.recovery.positions()
        for topic, seq in self.recovery.lowest_held(asked).items():
            live_from[topic] = min(seq, live_from.get(topic, seq))
        for topic in asked:
            if topic in live_from and positions[topic] + 1 >= live_from[topic]:
                reached.add(topic)

    async def _newest_page(self, session: Any, generation: int, topics: List[str]) -> Optional[Set[str]]:
        """After a refusal as pruned: read the newest page and deliver, for ``topics``, what
        is new in it; the topics it shows, or ``None`` if the session was lost."""
        page = await self._history_call(session, generation, latest=True, limit=self._page)
        if page is None:
            return None
        self.delivery.arrived_from_history(page)
        out, shown = self.recovery.offer_newest(page, topics, self._now())
        self.delivery.emit(out)
        return set(shown)

    async def _find_kept(self, session: Any, generation: int, topics: List[str]) -> bool:
        """Refused as pruned right after a newest page: each topic that page did not show
        moves to the first position the node accepts (its own position, if accepted).
        ``False`` if the session was lost."""
        for topic in topics:
            search = KeptSearch(topic, self.recovery.positions()[topic])
            while not search.done:
                asked = search.next_position()
                try:
                    answer = await self._history_call(session, generation, positions={topic: asked}, limit=1)
                except Pruned:
                    search.refused(asked)
                    continue
                if answer is None:
                    return False
                search.accepted(asked)
            if search.position > self.recovery.positions()[topic]:
                self.log.info("deptcast client: {topic}: retention removed seq {first}..{last}; reading on from there",
                              topic=topic, first=self.recovery.positions()[topic] + 1, last=search.position)
            self.delivery.emit(self.recovery.skip_to(topic, search.position, self._now()))
        return True

    async def _history_call(self, session: Any, generation: int, **kwargs: Any) -> Optional[List[Any]]:
        """Call ``deptcast.history`` on this session, waiting out ``rate_limited`` (its
        ``retry_after``, else 1 s) and retrying ``unavailable``; ``None`` if the session was
        replaced or lost meanwhile (the next join reads on).

        :raises Pruned: a position older than what the node's retention kept (not retried)
        """
        attempt = 0
        while generation == self._host.generation and self._host.fatal is None:
            try:
                answer = await session.call(names.PROC_HISTORY, **kwargs)
            except TransportLost:
                return None
            except ApplicationError as e:
                if e.error.startswith("wamp.close."):
                    return None
                error = as_error(e)
                if isinstance(error, (InvalidFrame, NotAuthorized)):
                    self._host.fail(error)  # will not fix itself: a client and a node that disagree
                    return None
                if isinstance(error, Pruned):
                    if generation != self._host.generation:
                        return None
                    raise error
                if isinstance(error, RateLimited):
                    # a limit per user, not a fault: wait as told and ask the same again
                    delay = rate_limit_wait(e.kwargs.get("retry_after") if e.kwargs else None)
                    self.stats.rate_limited += 1
                    log = self.log.info if self._rate_limit_logged != generation else self.log.debug
                    self._rate_limit_logged = generation
                    log("deptcast client: history calls are rate-limited; asking again in {delay:.2f} s",
                        delay=delay)
                    await sleep(self._call_later, delay)
                    continue
                self.log.info("deptcast client: history refused ({error}); retrying", error=str(error))
                await sleep(self._call_later, backoff(attempt, base=0.5, cap=10.0))
                attempt += 1
                continue
            if generation != self._host.generation:
                return None
            if not isinstance(answer, list):
                self._host.fail(DeptcastError("deptcast.history did not answer a list", uri="deptcast.client.protocol"))
                return None
            return answer
        return None
