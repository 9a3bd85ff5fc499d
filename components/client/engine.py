"""The client's engine, written once for both styles on txaio: what a subscriber does when a
session joins (subscribe, find or resume its positions, catch up from history), with each
event (the recovery rules of :mod:`components.core.recovery`), when a gap stays open, and
when the application sends. :class:`Connector` runs it on an Autobahn ``Component``, which
connects, authenticates and reconnects; the asyncio and Twisted front ends
(:mod:`components.client.aio`, :mod:`components.client.tx`) hand envelopes to the
application and tell the engine when it has finished with one.

Nothing here imports Twisted or asyncio: futures come from txaio, timers from the clock the
front end passes in, the session from the ``Component`` of the front end's framework.
"""

import functools
import inspect
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple, Union

import txaio
from autobahn.wamp.exception import ApplicationError, TransportLost
from autobahn.wamp.interfaces import IAuthenticator

from components.core import names
from components.core.errors import INVALID_TOKEN, TOKEN_EXPIRED
from components.core.positionsearch import KeptSearch, StartSearch, fresh_start
from components.core.recovery import (GAP_GRACE, HISTORY_PAGE, MAX_PRUNED_IN_A_ROW, START_PAGE, Envelope, Recovery,
                                      envelope_key)
from components.core.retry import backoff, rate_limit_wait
from components.client.errors import (ConnectionLost, DeptcastError, InvalidFrame, NotAuthorized, Pruned,
                                      RateLimited, Unavailable, error_for)
from components.client.state import PositionStore, StateError

#: a token, or a function that returns one (or an awaitable of one), asked on every connect
TokenSource = Union[str, Callable[[], Any]]
#: ``call_later(delay, fn)``: a timer with a ``cancel()`` (Twisted's ``callLater``, asyncio's ``call_later``)
CallLater = Callable[..., Any]

#: the default URL of ``deptcast listen`` and ``deptcast send``
DEFAULT_URL = "ws://localhost:8080/ws"


def parse_urls(values: Union[str, Sequence[str]]) -> List[str]:
    """Node URLs from a string or strings, each possibly comma-separated: a cluster's nodes
    or its load balancer.

    :raises ValueError: if there is none, or one is not a ``ws://`` or ``wss://`` URL
    :rtype: list
    """
    from autobahn.websocket.util import parse_url

    if isinstance(values, str):
        values = [values]
    urls = [u.strip() for v in values for u in v.split(",") if u.strip()]
    if not urls:
        raise ValueError("no node URL given")
    for url in urls:
        if len(url) > 2000:
            raise ValueError("a node URL longer than 2000 characters")
        try:
            parse_url(url)
        except Exception as e:
            raise ValueError(f"{url[:200]!r} is not a WebSocket URL (ws://host:port/ws): {e}") from None
    return urls


def _reason(error: ApplicationError) -> str:
    """The readable reason of a WAMP error (the first argument, as deptcast sends it)."""
    if error.args and isinstance(error.args[0], str):
        return error.args[0]
    return error.message or ""


def as_error(error: ApplicationError) -> DeptcastError:
    """The client exception for a WAMP error.

    :rtype: DeptcastError
    """
    return error_for(error.error, _reason(error))


class TicketAuthenticator:
    """WAMP-Ticket with a token asked of ``provider`` on every connect, so a token that
    expires is replaced on the next reconnect. No authid is sent: the node takes the user
    from the token."""

    name = "ticket"

    def __init__(self, provider: Callable[[], Any]) -> None:
        self._provider = provider
        #: what Autobahn's session reads for authid and authrole (none)
        self._args: Dict[str, Any] = {}

    @property
    def authextra(self) -> Dict[str, Any]:
        return {}

    def on_challenge(self, session: Any, challenge: Any) -> Any:
        token = self._provider()
        if inspect.isawaitable(token) and not txaio.is_future(token):
            async def wait():
                return await token
            return txaio.as_future(wait)
        return token

    def on_welcome(self, session: Any, authextra: Any) -> None:
        return None


IAuthenticator.register(TicketAuthenticator)


@dataclass
class Stats:
    """What one client has done (for logs, tests and the curious).

    :ivar live: events received
    :ivar from_history: envelopes received from history
    :ivar delivered: envelopes handed to the application
    :ivar delivered_from_history: of those, how many history brought first
    :ivar duplicates: envelopes dropped as already delivered (or held)
    :ivar live_repeats: events the router delivered twice with the same id
    :ivar gap_fills: history reads for a seq gap that stayed open
    :ivar skipped: seqs given up on (history did not have them)
    :ivar joins: sessions joined (the first one included)
    :ivar reconnects: sessions joined after the first
    :ivar pruned: history reads refused because a position was older than what the node's
        retention kept (``deptcast.error.pruned``): the client went on from the newest page
    :ivar rate_limited: history calls refused as ``rate_limited``, waited out and made again
    :ivar history_ids: the ids of the last 1000 envelopes that history brought first
    """

    live: int = 0
    from_history: int = 0
    delivered: int = 0
    delivered_from_history: int = 0
    duplicates: int = 0
    live_repeats: int = 0
    gap_fills: int = 0
    skipped: int = 0
    joins: int = 0
    reconnects: int = 0
    pruned: int = 0
    rate_limited: int = 0
    history_ids: "deque[str]" = field(default_factory=lambda: deque(maxlen=1000))


class Engine:
    """One subscriber's recovery across sessions; the sessions come from :class:`Connector`
    (or a test), through :meth:`on_join`, :meth:`on_leave` and :meth:`on_disconnect`.

    :param deliver: takes each envelope for the application, once, in per-topic order
    :param now: monotonic seconds
    :param call_later: the framework's timer
    :param state: where positions are kept across restarts (``None``: a restart starts afresh)
    :param history: how many of the newest envelopes a first start hands over (no state)
    :param grace: seconds an out-of-order envelope waits for the missing ones
    :param page: envelopes asked per history call
    :param listen: subscribe and deliver (``False``: a client that only sends)
    :param first_start: where a client with no saved position starts: ``"now"`` (what is
        stored already is from before its time, except the newest ``history``; a topic the
        newest page does not show is searched for where it stands), or ``"page"`` (the
        browser's rule: the newest page is delivered, and a topic it does not show is read
        from its beginning)
    """

    def __init__(self, deliver: Callable[[Envelope], None], now: Callable[[], float], call_later: CallLater,
                 state: Optional[PositionStore] = None, history: int = 0, grace: float = GAP_GRACE,
                 page: int = HISTORY_PAGE, listen: bool = True, first_start: str = "now") -> None:
        if first_start not in ("now", "page"):
            raise ValueError("first_start is 'now' or 'page'")
        self._first_start = first_start
        # made here, not at import: txaio needs its framework chosen first (by the front end)
        self.log = txaio.make_logger()
        self._listen = listen
        self._deliver = deliver
        self._now = now
        self._call_later = call_later
        self._state = state
        self._history = history
        self._grace = grace
        self._page = page
        self.stats = Stats()
        #: the last join's details (authid, authextra: the node in ``x_cb_node``)
        self.details: Any = None
        self.identity: Optional[Tuple[str, str]] = None
        self.recovery: Optional[Recovery] = None
        self._committed: Dict[str, int] = {}
        self._session: Any = None
        self._generation = 0
        self._fill_generation: Optional[int] = None
        self._timer: Any = None
        self._timer_at: Optional[float] = None
        self._origin: Dict[str, str] = {}
        self._live_ids: Dict[str, None] = {}
        self._waiting: List[Any] = []
        #: (True, None) once caught up, (False, error) if stopped before
        self._ready_outcome: Optional[Tuple[bool, Optional[BaseException]]] = None
        self._ready_listeners: List[Any] = []
        self._fatal: Optional[BaseException] = None
        self._fatal_listeners: List[Callable[[BaseException], None]] = []
        self._stopping = False
        self._connection_listeners: List[Callable[[bool, Any], None]] = []
        self._replayed = False
        #: the generation (session) whose first rate-limited history call was logged at info
        self._rate_limit_logged: Optional[int] = None

    # -- what the front ends ask

    def on_connection(self, listener: Callable[[bool, Any], None]) -> None:
        """Call ``listener(True, details)`` when a session has joined and caught up, and
        ``listener(False, None)`` when it is lost (the client reconnects by itself)."""
        self._connection_listeners.append(listener)

    @property
    def fatal(self) -> Optional[BaseException]:
        """The error that stopped the client for good, if one did."""
        return self._fatal

    @property
    def session(self) -> Any:
        """The joined session, or ``None`` while (re)connecting."""
        s = self._session
        return s if s is not None and s.is_attached() else None

    def ready(self) -> Any:
        """A future that fires once the first session has joined and caught up (or fails
        with the error that stopped the client before that).

        :rtype: future
        """
        f = txaio.create_future()
        if self._ready_outcome is None:
            self._ready_listeners.append(f)
        elif self._ready_outcome[0]:
            txaio.resolve(f, None)
        else:
            txaio.reject(f, self._ready_outcome[1])
        return f

    def on_fatal(self, listener: Callable[[BaseException], None]) -> None:
        """Call ``listener(error)`` when the client stops for good."""
        self._fatal_listeners.append(listener)

    def fail(self, error: BaseException) -> None:
        """Stop for good with ``error`` (a refused token, a state file of another user...)."""
        if self._fatal is not None:
            return
        self._fatal = error
        self.log.error("deptcast client: stopping: {error}", error=str(error))
        self._cancel_timer()
        self._fire_ready(error)
        for waiter in self._waiting:
            if not txaio.is_called(waiter):
                txaio.reject(waiter, error)
        self._waiting = []
        for listener in list(self._fatal_listeners):
            listener(error)

    def stopping(self) -> None:
        """The application is closing the client: no more timers."""
        self._stopping = True
        self._cancel_timer()

    def commit(self, envelope: Envelope) -> None:
        """The application has finished with ``envelope``: it is part of the saved position.

        :raises StateError: if the position cannot be saved
        """
        key = envelope_key(envelope)
        if key is None or key[1] is None or self.identity is None:
            return
        topic, seq = key
        if seq > self._committed.get(topic, 0):
            self._committed[topic] = seq
            self._save()

    def positions(self) -> Dict[str, int]:
        """The last ``seq`` the application has finished with, per topic.

        :rtype: dict
        """
        return dict(self._committed)

    async def send(self, to: str, message: str, timeout: float = 30.0) -> Envelope:
        """Send ``message`` to ``to``; the envelope the node stored.

        Waits up to ``timeout`` seconds for a session, and retries ``unavailable`` (the node
        is starting, its store or links are down) with a growing, jittered delay within the
        same time. Nothing else is retried: a send the connection lost in flight may have
        been stored (:class:`ConnectionLost`).

        :raises DeptcastError: the class of the error URI
        """
        deadline = self._now() + timeout
        attempt = 0
        while True:
            session = await self._joined_session(deadline)
            try:
                pending = session.call(names.PROC_SEND, to, message)
            except TransportLost:
                continue  # never left this process: safe to try again on the next session
            try:
                return await pending
            except ApplicationError as e:
                if e.error.startswith("wamp.close."):
                    raise ConnectionLost(f"the connection closed while sending ({e.error})") from None
                error = as_error(e)
            except TransportLost:
                raise ConnectionLost("the connection dropped while sending; the message may or may not "
                                     "have been stored") from None
            delay = backoff(attempt)
            if not isinstance(error, Unavailable) or self._now() + delay > deadline:
                raise error
            attempt += 1
            await self._sleep(delay)

    # -- the session's life (Connector calls these; so do the unit tests, with fakes)

    def on_join(self, session: Any, details: Any) -> None:
        self._generation += 1
        generation = self._generation
        self.details = details
        self.stats.joins += 1
        if self.stats.joins > 1:
            self.stats.reconnects += 1
        d = txaio.as_future(self._joined, session, details, generation)
        txaio.add_callbacks(d, None, functools.partial(self._join_failed, generation))

    def is_current(self, session: Any) -> bool:
        """Whether ``session`` is the one this engine has joined with."""
        return session is not None and session is self._session

    def on_leave(self, session: Any, details: Any) -> None:
        self._lost(session)

    def on_disconnect(self, session: Any, was_clean: bool = False) -> None:
        self._lost(session)

    def _lost(self, session: Any) -> None:
        if session is self._session:
            self._session = None
            if self.recovery is not None:
                self.recovery.drop_held()  # the next join reads them by position
                self._cancel_timer()
            if not self._stopping and self._fatal is None:
                for listener in list(self._connection_listeners):
                    listener(False, None)

    async def _joined(self, session: Any, details: Any, generation: int) -> None:
        dept = (getattr(details, "authextra", None) or {}).get("dept")
        user = getattr(details, "authid", None)
        if not names.is_name(dept) or not names.is_name(user):
            self.fail(DeptcastError("the node did not tell the session's department and user",
                                    uri="deptcast.client.protocol"))
            return
        if self.identity is None:
            self._begin(dept, user)
        elif self.identity != (dept, user):
            self.fail(StateError(f"the token is now {names.user_key(dept, user)}'s, not "
                                 f"{names.user_key(*self.identity)}'s: one client is one user"))
            return
        if self._fatal is not None:
            return
        self._session = session
        self.log.info("deptcast client: joined as {key} on {node}", key=names.user_key(dept, user),
                      node=(details.authextra or {}).get("x_cb_node", "a node"))
        for waiter in self._waiting:
            if not txaio.is_called(waiter):
                txaio.resolve(waiter, session)
        self._waiting = []
        assert self.recovery is not None
        if not self._listen:
            self._caught_up(generation)
            return
        # subscribe first, then read history: whatever is stored after the read arrives live
        for topic in self.recovery.topics:
            await session.subscribe(functools.partial(self._on_event, generation), topic)
        if generation != self._generation:
            return
        self.recovery.begin_join()  # live events wait until the join's read is done
        shown: Optional[Set[str]] = None
        if self.recovery.unknown():
            shown = await self._start(session, generation)
            if shown is None:
                return  # lost meanwhile: the next join starts again
        if await self._fill(session, generation, None, join=True, shown=shown):
            self._caught_up(generation)

    def _caught_up(self, generation: int) -> None:
        if generation != self._generation or self._fatal is not None:
            return
        self._fire_ready(None)
        for listener in list(self._connection_listeners):
            listener(True, self.details)

    def _begin(self, dept: str, user: str) -> None:
        """The first join: this client's topics, and its saved positions if any."""
        self.identity = (dept, user)
        topics = names.client_topics(dept, user)
        positions: Dict[str, int] = {}
        if self._state is not None and self._listen:
            try:
                saved = self._state.load()
            except StateError as e:
                self.fail(e)
                return
            if saved is not None:
                owner, positions = saved
                if owner != names.user_key(dept, user):
                    self.fail(StateError(f"the saved position is {owner}'s; this token is "
                                         f"{names.user_key(dept, user)}'s"))
                    return
        positions = {t: p for t, p in positions.items() if t in topics}
        self._committed = dict(positions)
        self.recovery = Recovery(topics, positions, self._grace)
        if positions:
            self.log.info("deptcast client: resuming after {positions}", positions=positions)

    async def _start(self, session: Any, generation: int) -> Optional[Set[str]]:
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
        for envelope in shown:
            self.stats.delivered += 1
            self.stats.delivered_from_history += 1
            self._deliver(envelope)
        for topic, seq in starts.items():
            self._emit(recovery.start_at(topic, seq, self._now()))
        for topic in rest:
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
            self._emit(recovery.start_at(topic, search.position, self._now()))
        for topic, seq in recovery.positions().items():
            self._committed.setdefault(topic, seq)
        self._save()
        self.log.info("deptcast client: starting after {positions}", positions=recovery.positions())
        return from_page

    async def _fill(self, session: Any, generation: int, topics: Optional[List[str]], join: bool = False,
                    shown: Optional[Set[str]] = None) -> bool:
        """Read history past the positions of ``topics`` (all: ``None``) until an empty answer
        (``join``: the read of a join, after which the events held meanwhile go); a short
        answer is not the end (the node bounds answers by bytes too). ``False`` if it did not
        get to the end (the session was lost, or another read is under way).

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
        try:
            while True:
                asked = {t: p for t, p in recovery.positions().items() if topics is None or t in topics}
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
                self.stats.from_history += len(page)
                for envelope in page:
                    if isinstance(envelope, dict):
                        self._origin.setdefault(str(envelope.get("id")), "history")
                self._emit(recovery.offer_page(page, self._now()))
            self._emit(recovery.end_fill(mark, topics, self._now(), join=join))
        finally:
            if self._fill_generation == generation:
                self._fill_generation = None
            self._sync_counts()
        self._schedule()
        return True

    async def _newest_page(self, session: Any, generation: int, topics: List[str]) -> Optional[Set[str]]:
        """After a refusal as pruned: read the newest page and deliver, for ``topics``, what
        is new in it; the topics it shows, or ``None`` if the session was lost."""
        page = await self._history_call(session, generation, latest=True, limit=self._page)
        if page is None:
            return None
        self.stats.from_history += len(page)
        for envelope in page:
            if isinstance(envelope, dict):
                self._origin.setdefault(str(envelope.get("id")), "history")
        out, shown = self.recovery.offer_newest(page, topics, self._now())
        self._emit(out)
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
            self._emit(self.recovery.skip_to(topic, search.position, self._now()))
        return True

    async def _history_call(self, session: Any, generation: int, **kwargs: Any) -> Optional[List[Any]]:
        """Call ``deptcast.history`` on this session, waiting out ``rate_limited`` (its
        ``retry_after``, else 1 s) and retrying ``unavailable``; ``None`` if the session was
        replaced or lost meanwhile (the next join reads on).

        :raises Pruned: a position older than what the node's retention kept (not retried)
        """
        attempt = 0
        while generation == self._generation and self._fatal is None:
            try:
                answer = await session.call(names.PROC_HISTORY, **kwargs)
            except TransportLost:
                return None
            except ApplicationError as e:
                if e.error.startswith("wamp.close."):
                    return None
                error = as_error(e)
                if isinstance(error, (InvalidFrame, NotAuthorized)):
                    self.fail(error)  # will not fix itself: a client and a node that disagree
                    return None
                if isinstance(error, Pruned):
                    if generation != self._generation:
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
                    await self._sleep(delay)
                    continue
                self.log.info("deptcast client: history refused ({error}); retrying", error=str(error))
                await self._sleep(backoff(attempt, base=0.5, cap=10.0))
                attempt += 1
                continue
            if generation != self._generation:
                return None
            if not isinstance(answer, list):
                self.fail(DeptcastError("deptcast.history did not answer a list", uri="deptcast.client.protocol"))
                return None
            return answer
        return None

    def _join_failed(self, generation: int, failure: Any) -> None:
        error = getattr(failure, "value", failure)
        if isinstance(error, StateError):
            self.fail(error)  # the position could not be saved: said once, without a traceback
        elif isinstance(error, ApplicationError) and not error.error.startswith("wamp.close."):
            self.fail(as_error(error))  # e.g. the router refused a subscription
        elif isinstance(error, (TransportLost, ApplicationError)):
            pass  # the session went away while joining: the next one starts over
        elif isinstance(error, Exception) and not isinstance(error, DeptcastError):
            self.log.failure("deptcast client: joining failed", failure=failure)
            self.fail(error)
        else:
            self.fail(error)

    # -- events and delivery

    def _on_event(self, generation: int, envelope: Any = None, *args: Any, **kwargs: Any) -> None:
        if generation != self._generation or self.recovery is None:
            return
        self.stats.live += 1
        if isinstance(envelope, dict):
            msg_id = str(envelope.get("id"))
            if msg_id in self._live_ids:
                self.stats.live_repeats += 1
            self._live_ids[msg_id] = None
            if len(self._live_ids) > 10000:
                self._live_ids.pop(next(iter(self._live_ids)))
            self._origin.setdefault(msg_id, "live")
        self._emit(self.recovery.offer(envelope, self._now()))
        self._sync_counts()
        self._schedule()

    def _emit(self, envelopes: List[Envelope]) -> None:
        for envelope in envelopes:
            self.stats.delivered += 1
            if self._origin.pop(envelope["id"], "live") == "history":
                self.stats.delivered_from_history += 1
                self.stats.history_ids.append(envelope["id"])
            self._deliver(envelope)
        if len(self._origin) > 20000:  # ids that never became deliveries (duplicates): forget them
            self._origin.clear()

    def _sync_counts(self) -> None:
        if self.recovery is not None:
            self.stats.duplicates = self.recovery.duplicates
            self.stats.skipped = self.recovery.skipped

    # -- gaps

    def _schedule(self) -> None:
        """Set the timer for the next gap to become due (if one is open)."""
        if self.recovery is None or self._stopping or self._fatal is not None:
            return
        due_at = self.recovery.next_due()
        if due_at is None:
            self._cancel_timer()
            return
        if self._timer is not None and self._timer_at is not None and self._timer_at <= due_at:
            return
        self._cancel_timer()
        self._timer_at = due_at
        self._timer = self._call_later(max(0.0, due_at - self._now()), self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            try:
                self._timer.cancel()
            except Exception:  # already ran (Twisted raises AlreadyCalled)
                pass
        self._timer = None
        self._timer_at = None

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        if self.recovery is None or self._fatal is not None or self._stopping:
            return
        due = self.recovery.due(self._now())
        session = self.session
        if not due:
            self._schedule()
            return
        if session is None:
            return  # the next join reads history for every topic
        self.stats.gap_fills += 1
        self.log.info("deptcast client: seq gap in {topics} still open after {grace} s; reading history",
                      topics=sorted(due), grace=self._grace)
        d = txaio.as_future(self._fill, session, self._generation, sorted(due))
        txaio.add_callbacks(d, None, self._log_failure)

    def _log_failure(self, failure: Any) -> None:
        self.log.failure("deptcast client: reading history failed", failure=failure)

    # -- helpers

    def _save(self) -> None:
        if self._state is None or self.identity is None:
            return
        try:
            self._state.save(names.user_key(*self.identity), dict(self._committed))
        except StateError as e:
            self.fail(e)
            raise

    def _fire_ready(self, error: Optional[BaseException]) -> None:
        if self._ready_outcome is not None:
            return
        self._ready_outcome = (error is None, error)
        for f in self._ready_listeners:
            if txaio.is_called(f):
                continue
            if error is None:
                txaio.resolve(f, None)
            else:
                txaio.reject(f, error)
        self._ready_listeners = []

    def _joined_session(self, deadline: float) -> Any:
        """A future of a joined session (waiting until ``deadline`` for one)."""
        f = txaio.create_future()
        if self._fatal is not None:
            txaio.reject(f, self._fatal)
            return f
        session = self.session
        if session is not None:
            txaio.resolve(f, session)
            return f
        self._waiting.append(f)

        def expire() -> None:
            if not txaio.is_called(f):
                if f in self._waiting:
                    self._waiting.remove(f)
                txaio.reject(f, Unavailable("no deptcast node could be reached in time"))
        timer = self._call_later(max(0.0, deadline - self._now()), expire)

        def cancel_timer(result: Any) -> Any:
            try:
                timer.cancel()
            except Exception:
                pass
            return result
        txaio.add_callbacks(f, cancel_timer, cancel_timer)
        return f

    def _sleep(self, delay: float) -> Any:
        f = txaio.create_future()
        self._call_later(delay, lambda: txaio.is_called(f) or txaio.resolve(f, None))
        return f


def transport_config(url: str, max_delay: float = 20.0) -> Dict[str, Any]:
    """An Autobahn transport for ``url``: the first attempt at once, then (Autobahn multiplies
    before it waits) 1.5 s, ×1.5 per attempt up to ``max_delay``, each delay spread by 20 %
    (normal jitter); ping the node every 10 s so a dead connection is noticed even when no
    TCP reset arrives.

    :rtype: dict
    """
    return {"type": "websocket", "url": url, "max_retries": -1, "initial_retry_delay": 1.0,
            "retry_delay_growth": 1.5, "retry_delay_jitter": 0.2, "max_retry_delay": max_delay,
            "options": {"autoPingInterval": 10, "autoPingTimeout": 10}}


class Connector:
    """Runs an Autobahn ``Component`` for an :class:`Engine`: the node URLs (tried in turn,
    the first attempt on each at once, then with jittered back-off), WAMP-Ticket with the
    token (or a provider asked on every connect), and a new start whenever the component
    ends without being stopped.

    A refused token stops the client when the token is fixed; a provider is asked again on
    the next attempt, and the client stops after ``max_refusals`` refusals in a row.

    :param component_class: ``autobahn.twisted.component.Component`` or the asyncio one
    :param urls: node URLs
    :param token: a token or a provider
    :param engine: the engine the sessions go to
    :param call_later: the framework's timer (for restarts)
    """

    def __init__(self, component_class: Any, urls: Sequence[str], token: TokenSource, engine: Engine,
                 call_later: CallLater, max_refusals: int = 3, max_delay: float = 20.0) -> None:
        self.log = txaio.make_logger()
        if isinstance(token, str):
            fixed = token
            self._fixed = True
            provider: Callable[[], Any] = lambda: fixed  # noqa: E731
        elif callable(token):
            self._fixed = False
            provider = token
        else:
            raise TypeError("token must be a string or a function that returns one")
        self.engine = engine
        self._call_later = call_later
        self._max_refusals = max_refusals
        self._refusals = 0
        self._stopping = False
        self._restarts = 0
        self._loop: Any = None
        self._started = False
        self._done = txaio.create_future()
        self.component = component_class(
            transports=[transport_config(u, max_delay) for u in urls], realm=names.REALM,
            authentication={"ticket": TicketAuthenticator(provider)}, is_fatal=self._is_fatal)
        self.component.on("join", self._on_join)
        self.component.on("leave", self._on_leave)
        self.component.on("disconnect", self._on_disconnect)
        engine.on_fatal(lambda error: self.stop())

    def start(self, loop: Any = None) -> None:
        self._loop = loop
        self._started = True
        self._run()

    def stop(self) -> Any:
        """Leave and stop reconnecting; a future that fires when the component has ended."""
        if not self._stopping:
            self._stopping = True
            self.engine.stopping()
            self._halt()
        f = txaio.create_future()
        txaio.add_callbacks(self._done, lambda r: txaio.resolve(f, None), lambda e: txaio.resolve(f, None))
        return f

    def _halt(self) -> None:
        component = self.component
        # Component.stop() leaves a joined session and cancels a back-off delay; in the middle
        # of a connection attempt it would not stop the attempts that follow, so then
        # _is_fatal ends them and a session that still joins is left at once (_on_join)
        session = getattr(component, "_session", None)
        if not self._started:
            txaio.resolve(self._done, None)
        elif (session is not None and session.is_attached()) or getattr(component, "_delay_f", None) is not None:
            try:
                component.stop()
            except Exception as e:  # already ending
                self.log.debug("deptcast client: stopping the component: {e}", e=e)

    def _run(self) -> None:
        d = self.component.start(self._loop)
        txaio.add_callbacks(d, self._ended, self._ended)

    def _ended(self, result: Any) -> None:
        """The component ended: stopped, a fatal error, or (seldom) a clean close by the
        node: then start again."""
        if self._stopping or self.engine.fatal is not None:
            if not txaio.is_called(self._done):
                txaio.resolve(self._done, None)
            return None
        self._restarts += 1
        delay = backoff(self._restarts, base=1.0, cap=20.0)
        self.log.info("deptcast client: connection ended; starting again in {delay:.1f} s", delay=delay)
        self._call_later(delay, self._run)
        return None

    def _is_fatal(self, error: BaseException) -> bool:
        """Whether the component may not try again: the client is stopping or has stopped for
        good. Then every transport is marked failed, so the component ends now instead of
        trying the other URLs (Autobahn marks only the one that failed)."""
        if self._stopping or self.engine.fatal is not None:
            for transport in getattr(self.component, "_transports", []):
                transport.failed()
            return True
        return False

    def _on_join(self, session: Any, details: Any) -> None:
        if self._stopping:
            session.leave()
            return
        self._refusals = 0
        self._restarts = 0
        self.engine.on_join(session, details)

    def _on_leave(self, session: Any, details: Any) -> None:
        reason = getattr(details, "reason", "")
        if reason == names.CLOSE_GOING_AWAY:
            # the node is stopping and asks its clients to go elsewhere now: the next attempt
            # goes at once (Autobahn tries at once a transport that has not failed yet), not
            # after the back-off meant for a node that failed
            for transport in getattr(self.component, "_transports", []):
                transport.reset()
            self.log.info("deptcast client: the node is stopping; reconnecting at once")
        if reason in (INVALID_TOKEN, TOKEN_EXPIRED) and not self.engine.is_current(session):
            self._refusals += 1
            error = error_for(reason, getattr(details, "message", "") or "")
            if self._fixed or self._refusals >= self._max_refusals:
                self.engine.fail(error)
            else:
                self.log.warn("deptcast client: token refused ({error}); asking the provider again",
                              error=str(error))
        self.engine.on_leave(session, details)

    def _on_disconnect(self, session: Any, was_clean: bool) -> None:
        self.engine.on_disconnect(session, was_clean)
