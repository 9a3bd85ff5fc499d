"""The client's engine, written once for both styles on txaio: one subscriber's life across
sessions. When a session joins it subscribes, finds or resumes its positions and catches up
(:class:`~components.client.catchup.CatchUp`); each event goes through the recovery rules
(:mod:`components.core.recovery`) to the application (:class:`~components.client.delivery.Delivery`);
a gap that stays open is read from history on a timer; and the application's calls wait for
a session and retry what may be retried (:mod:`~components.client.calls`); what reaches the
application is acknowledged as delivered (:mod:`~components.client.receipts`).
:class:`~components.client.connector.Connector`
brings the sessions (an Autobahn ``Component``: it connects, authenticates and reconnects);
the asyncio and Twisted front ends (:mod:`components.client.aio`, :mod:`components.client.tx`)
hand envelopes to the application and tell the engine when it has finished with one.

Nothing here imports Twisted or asyncio: futures come from txaio, timers from the clock the
front end passes in, the session from the ``Component`` of the front end's framework.
"""

import functools
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Set, Tuple

import txaio
from autobahn.wamp.exception import ApplicationError, TransportLost

from components.client import contract
from components.client.calls import Caller, batch_items, check_key
from components.client.catchup import CatchUp
from components.client.delivery import Delivery
from components.client.errors import ConnectionLost, DeptcastError, InvalidFrame, NotConnected, as_error
from components.client.receipts import AckQueue
from components.client.state import PositionStore, StateError
from components.client.stats import Stats
from components.client.timers import CallLater, cancel
from components.core import names
from components.core.recovery import GAP_GRACE, HISTORY_PAGE, Envelope, Recovery

#: the receipt counts of a notice, as ``deptcast.receipts`` and the receipts topic give them
Counts = Dict[str, Any]


class Engine:
    """One subscriber's recovery across sessions; the sessions come from a
    :class:`~components.client.connector.Connector` (or a test), through :meth:`on_join`,
    :meth:`on_leave` and :meth:`on_disconnect`.

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
    :param acknowledge: acknowledge ``delivered`` for what reaches the application (not the
        user's own notices)
    """

    def __init__(self, deliver: Callable[[Envelope], None], now: Callable[[], float], call_later: CallLater,
                 state: Optional[PositionStore] = None, history: int = 0, grace: float = GAP_GRACE,
                 page: int = HISTORY_PAGE, listen: bool = True, first_start: str = "now",
                 acknowledge: bool = True) -> None:
        if first_start not in ("now", "page"):
            raise ValueError("first_start is 'now' or 'page'")
        self._first_start = first_start
        # made here, not at import: txaio needs its framework chosen first (by the front end)
        self.log = txaio.make_logger()
        self._listen = listen
        self._now = now
        self._call_later = call_later
        self._history = history
        self._grace = grace
        self._page = page
        self.stats = Stats()
        self._deliver = deliver
        self._acknowledge = acknowledge
        self._delivery = Delivery(self._hand_over, self.stats, state, self.fail)
        self.calls = Caller(self.joined_session, now, call_later, self.stats)
        self.acks = AckQueue(now, call_later, self.stats, self.log)
        self._receipt_listeners: List[Callable[[Counts], None]] = []
        #: the last join's details (authid, authextra: the node in ``x_cb_node``)
        self.details: Any = None
        self.identity: Optional[Tuple[str, str]] = None
        self.recovery: Optional[Recovery] = None
        self._catchup: Optional[CatchUp] = None
        self._session: Any = None
        self._generation = 0
        self._timer: Any = None
        self._timer_at: Optional[float] = None
        self._waiting: List[Any] = []
        #: (True, None) once caught up, (False, error) if stopped before
        self._ready_outcome: Optional[Tuple[bool, Optional[BaseException]]] = None
        self._ready_listeners: List[Any] = []
        self._fatal: Optional[BaseException] = None
        self._fatal_listeners: List[Callable[[BaseException], None]] = []
        self._stopping = False
        self._connection_listeners: List[Callable[[bool, Any], None]] = []

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
    def generation(self) -> int:
        """The number of the session joined last (1 for the first)."""
        return self._generation

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
        self.acks.stop()
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
        self.acks.stop()

    def commit(self, envelope: Envelope) -> None:
        """The application has finished with ``envelope``: it is part of the saved position.

        :raises StateError: if the position cannot be saved
        """
        self._delivery.commit(envelope)

    def positions(self) -> Dict[str, int]:
        """The last ``seq`` the application has finished with, per topic.

        :rtype: dict
        """
        return self._delivery.positions()

    async def send(self, to: str, message: str, timeout: float = 30.0, key: Optional[str] = None) -> Envelope:
        """Send ``message`` to ``to``; the envelope the node stored.

        The notice goes with one idempotency ``key`` (a new one unless given: give the same key
        to send the same notice again), used on every attempt: waits up to ``timeout`` seconds
        for a session, and retries ``unavailable``, ``rate_limited`` and a lost or unanswered
        attempt within the same time (:mod:`~components.client.calls`). The node stores a
        notice once per key, so a retry never stores it twice.

        :raises DeptcastError: the class of the error URI; a
            :class:`~components.client.errors.ConnectionLost` carries the ``key`` to send it
            again with
        """
        key = check_key(key)
        try:
            return await self.calls.call(names.PROC_SEND, (to, message), {"key": key}, timeout)
        except ConnectionLost as e:
            e.key = key
            raise

    async def send_batch(self, items: Sequence[Mapping[str, Any]], timeout: float = 60.0) -> List[Any]:
        """Send up to 1,000 notices ``{"to", "message", "key"?}`` in one call
        (``deptcast.send_batch``); an item without a key gets a new one, and the batch is
        retried as a whole with the same keys (as :meth:`send`). One result per item, in
        order: the envelope, or ``{"error": <uri>, "detail": <text>}``.

        :raises DeptcastError: the refusal of the whole call (the class of its URI)
        :rtype: list
        """
        batch = batch_items(items)
        if not batch:
            return []
        results = await self.calls.call(contract.PROC_SEND_BATCH, (batch,), {}, timeout)
        if not isinstance(results, list) or len(results) != len(batch):
            raise DeptcastError("deptcast.send_batch did not answer one result per item",
                                uri="deptcast.client.protocol")
        return results

    async def call(self, procedure: str, *args: Any, timeout: float = 30.0, **kwargs: Any) -> Any:
        """Call ``procedure`` on the node, retried as :meth:`send` is (for calls that are safe
        to repeat: reads, and the operators' procedures)."""
        return await self.calls.call(procedure, args, kwargs, timeout)

    async def receipts(self, envelope_id: str, timeout: float = 30.0) -> Counts:
        """The receipt counts of a notice this user sent: ``{"id", "audience", "seen",
        "delivered", "pending"}`` (disjoint: seen; delivered but not seen; neither)."""
        return await self.call(contract.PROC_RECEIPTS, envelope_id, timeout=timeout)

    async def recipients(self, envelope_id: str, state: str, after: Optional[str] = None, limit: int = 200,
                         timeout: float = 30.0) -> Dict[str, Any]:
        """One page of the audience of a notice in ``state`` (``"seen"``, ``"delivered"`` or
        ``"pending"``): ``{"users": [{"dept", "user", "at"}], "next"}``; pass ``next`` as
        ``after`` for the following page (``None``: no more)."""
        if state not in contract.RECIPIENT_STATES:
            raise InvalidFrame(f"state: one of {', '.join(contract.RECIPIENT_STATES)}")
        kwargs: Dict[str, Any] = {"limit": limit}
        if after is not None:
            kwargs["after"] = after
        return await self.call(contract.PROC_RECIPIENTS, envelope_id, state, timeout=timeout, **kwargs)

    def ack_seen(self, ids: Sequence[str]) -> None:
        """The user saw these notices: acknowledged as ``seen`` with the next batch."""
        if isinstance(ids, str):
            raise TypeError("ack_seen takes a list of ids")
        self.acks.add(ids, contract.SEEN)

    def follow_receipts(self, listener: Callable[[Counts], None]) -> None:
        """Call ``listener(counts)`` with the new receipt counts of this user's notices, as the
        node publishes them on ``deptcast.receipts.<dept>_<user>`` (subscribed from now on, on
        every session; a node that does not offer it is left alone)."""
        self._receipt_listeners.append(listener)
        session = self.session
        if len(self._receipt_listeners) == 1 and session is not None and self.identity is not None:
            d = txaio.as_future(self._follow_receipts, session, self._generation)
            txaio.add_callbacks(d, None, self._log_failure)

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
            self.acks.lost()
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
        self.acks.joined(session)
        assert self.recovery is not None
        if self._receipt_listeners:
            await self._follow_receipts(session, generation)
            if generation != self._generation:
                return
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
            assert self._catchup is not None
            shown = await self._catchup.start(session, generation)
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
        try:
            positions = self._delivery.resume(names.user_key(dept, user), topics, load=self._listen)
        except StateError as e:
            self.fail(e)
            return
        self.recovery = Recovery(topics, positions, self._grace)
        self._catchup = CatchUp(self, self.recovery, self._delivery, self.log, self._now, self._call_later,
                                page=self._page, history=self._history, first_start=self._first_start)
        if positions:
            self.log.info("deptcast client: resuming after {positions}", positions=positions)

    async def _fill(self, session: Any, generation: int, topics: Optional[List[str]], join: bool = False,
                    shown: Optional[Set[str]] = None) -> bool:
        """Read history past the positions of ``topics`` (:meth:`CatchUp.fill
        <components.client.catchup.CatchUp.fill>`); once it got to the end, set the timer for
        the gaps still open."""
        assert self._catchup is not None
        done = await self._catchup.fill(session, generation, topics, join=join, shown=shown)
        if done:
            self._schedule()
        return done

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

    # -- receipts

    def _hand_over(self, envelope: Envelope) -> None:
        """Give ``envelope`` to the application and acknowledge it (not the user's own)."""
        if self._acknowledge and self.identity is not None and isinstance(envelope, dict):
            dept, user = self.identity
            if not (envelope.get("sender") == user and envelope.get("sender_dept") == dept):
                self.acks.add([envelope.get("id")], contract.DELIVERED)
        self._deliver(envelope)

    async def _follow_receipts(self, session: Any, generation: int) -> None:
        """Subscribe to this user's receipt counts on ``session``; a node that refuses it
        (an older node) is left alone."""
        assert self.identity is not None
        topic = contract.receipts_topic(names.user_key(*self.identity))
        try:
            await session.subscribe(functools.partial(self._on_counts, generation), topic)
        except ApplicationError as e:
            self.log.info("deptcast client: no receipt counts on this node ({uri})", uri=e.error)
        except TransportLost:
            pass  # the next session subscribes again

    def _on_counts(self, generation: int, counts: Any = None, *args: Any, **kwargs: Any) -> None:
        if generation != self._generation or not isinstance(counts, dict):
            return
        for listener in list(self._receipt_listeners):
            try:
                listener(counts)
            except Exception:
                self.log.failure("deptcast client: a receipts listener failed")

    # -- events

    def _on_event(self, generation: int, envelope: Any = None, *args: Any, **kwargs: Any) -> None:
        if generation != self._generation or self.recovery is None or self._catchup is None:
            return
        self._delivery.arrived_live(envelope)
        self._delivery.emit(self.recovery.offer(envelope, self._now()))
        self._catchup.sync_counts()
        self._schedule()

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
            cancel(self._timer)
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

    def joined_session(self, deadline: float) -> Any:
        """A future of a joined session (waiting until ``deadline``, monotonic, for one; then
        failing with :class:`~components.client.errors.NotConnected`), or failing with the
        error that stopped the client."""
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
                txaio.reject(f, NotConnected("no deptcast node could be reached in time"))
        timer = self._call_later(max(0.0, deadline - self._now()), expire)

        def cancel_timer(result: Any) -> Any:
            cancel(timer)
            return result
        txaio.add_callbacks(f, cancel_timer, cancel_timer)
        return f
