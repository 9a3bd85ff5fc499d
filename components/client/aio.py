"""The deptcast client for asyncio programs.

::

    from components.client.aio import Client

    async with Client("ws://localhost:8080/ws", token, state="alice.state") as client:
        await client.send("cardio", "Ward round moved to 10:30")
        async for envelope in client.events():
            print(envelope["sender"], "->", envelope["target"], ":", envelope["message"])

``token`` is a string (a fixed token: the session ends at its ``exp``) or a function that
returns one (asked on every connect, and ahead of ``exp`` for a newer token that the open
session takes without a reconnect).

Importing this module selects asyncio for txaio (and so for Autobahn) in this process.
"""

import asyncio
from collections import deque
from pathlib import Path
from typing import Any, AsyncIterator, Deque, Dict, List, Mapping, Optional, Sequence, Union

import txaio

txaio.use_asyncio()

from autobahn.asyncio.component import Component
from autobahn.asyncio.wamp import Session as AutobahnSession

from components.client.connector import Connector, parse_urls
from components.client.contract import PROC_ADMIN_REVOKE, PROC_ROSTER
from components.client.engine import Counts, Engine
from components.client.session import AcceptsLateMessages
from components.client.stats import Stats
from components.client.ticket import TokenSource
from components.client.state import FileState, PositionStore
from components.core.recovery import GAP_GRACE, Envelope

__all__ = ["Client", "Session"]


class Session(AcceptsLateMessages, AutobahnSession):
    """Autobahn's session for this framework, accepting quietly what arrives after it ended."""


class Client:
    """One deptcast user, subscribed to its department, ``deptcast.all`` and its own direct
    messages; :meth:`events` yields each envelope exactly once, in per-topic order, across
    reconnects and node failover.

    An envelope counts as handled (and, with ``state``, saved as the position) when the loop
    asks for the next one; one the loop leaves (``break``, an exception) is handed over
    again after a restart.

    :param url: a node URL, or several (a list, or comma-separated): tried in turn
    :param token: a token, or a function returning one (or an awaitable of one), asked on every
        connect and ahead of the token's expiry (a fixed token ends its session at ``exp``:
        :meth:`events` then raises :class:`~components.client.errors.TokenExpired`)
    :param state: a state file path (or any :class:`~components.client.state.PositionStore`):
        a restarted client resumes there and gets what it missed
    :param history: on a first start (no state), yield the newest ``history`` envelopes first
    :param listen: ``False`` for a client that only sends (no subscriptions, no history)
    :param acknowledge: acknowledge ``delivered`` for every envelope handed over (default)
    """

    def __init__(self, url: Union[str, Sequence[str]], token: TokenSource, *,
                 state: Union[None, str, Path, PositionStore] = None, history: int = 0,
                 gap_grace: float = GAP_GRACE, listen: bool = True, acknowledge: bool = True) -> None:
        self._acknowledge = acknowledge
        self._counts: Deque[Counts] = deque()
        self._listen = listen
        self._urls = parse_urls(url)
        self._token = token
        if isinstance(state, (str, Path)):
            state = FileState(state)
        self._state = state
        self._history = history
        self._grace = gap_grace
        self._queue: Deque[Envelope] = deque()
        self._wakeups: List[asyncio.Future] = []
        self._stopped = False
        self._following = False
        self.engine: Optional[Engine] = None
        self._connector: Optional[Connector] = None

    async def start(self) -> None:
        """Connect; returns once joined, subscribed and caught up.

        :raises DeptcastError: the error that stopped the client (e.g. :class:`TokenExpired`)
        """
        loop = asyncio.get_running_loop()
        if self.engine is None:
            self.engine = Engine(self._enqueue, loop.time, loop.call_later, state=self._state,
                                 history=self._history, grace=self._grace, listen=self._listen,
                                 acknowledge=self._acknowledge)
            self.engine.on_fatal(lambda error: self._wake())
            self._connector = Connector(Component, Session, self._urls, self._token, self.engine, loop.call_later)
            self._connector.start(loop)
        await self.engine.ready()

    async def stop(self) -> None:
        """Leave, stop reconnecting, release the state file."""
        self._stopped = True
        self._wake()
        if self._connector is not None:
            await self._connector.stop()
        if isinstance(self._state, FileState):
            self._state.unlock()

    async def __aenter__(self) -> "Client":
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    async def events(self) -> AsyncIterator[Envelope]:
        """Every envelope for this user, once each, in per-topic order; ends when the client
        is stopped.

        :raises DeptcastError: the error that stopped the client for good
        """
        engine = await self._engine()
        while await self._ready(self._queue):
            envelope = self._queue.popleft()
            yield envelope
            engine.commit(envelope)  # the loop asked for the next one: this one is handled

    async def _engine(self) -> Engine:
        if self.engine is None:
            await self.start()
        assert self.engine is not None
        return self.engine

    async def send(self, to: str, message: str, timeout: float = 30.0, key: Optional[str] = None) -> Envelope:
        """Send ``message`` to ``to`` (a department code, ``"All"`` or ``<dept>_<user>``);
        the stored envelope. One idempotency ``key`` per notice (a new one unless given), used
        on every retry within ``timeout`` (see :meth:`Engine.send
        <components.client.engine.Engine.send>`).

        :raises DeptcastError: the exception of the error URI
        """
        return await (await self._engine()).send(to, message, timeout, key)

    async def send_batch(self, items: Sequence[Mapping[str, Any]], timeout: float = 60.0) -> List[Any]:
        """Send up to 1,000 notices ``{"to", "message", "key"?}`` in one call; one result per
        item, in order: the envelope or ``{"error", "detail"}`` (see :meth:`Engine.send_batch
        <components.client.engine.Engine.send_batch>`)."""
        return await (await self._engine()).send_batch(items, timeout)

    async def receipts(self, envelope_id: str) -> Counts:
        """The receipt counts of a notice this user sent: ``{"id", "audience", "seen",
        "delivered", "pending"}``."""
        return await (await self._engine()).receipts(envelope_id)

    async def recipients(self, envelope_id: str, state: str, after: Optional[str] = None,
                         limit: int = 200) -> Dict[str, Any]:
        """One page of who is in ``state`` (``"seen"``, ``"delivered"``, ``"pending"``):
        ``{"users": [{"dept", "user", "at"}], "next"}``; pass ``next`` as ``after`` for more."""
        return await (await self._engine()).recipients(envelope_id, state, after, limit)

    def ack_seen(self, ids: Sequence[str]) -> None:
        """The user saw these notices (acknowledged as ``seen`` with the next batch)."""
        if self.engine is None:
            raise RuntimeError("start the client first")
        self.engine.ack_seen(ids)

    async def roster(self, dept: str) -> Dict[str, Any]:
        """The department's known members: ``{"dept", "users": [{"user", "first_seen",
        "last_seen", "source"}]}``."""
        return await (await self._engine()).call(PROC_ROSTER, dept)

    async def revoke(self, user_key: str) -> Any:
        """End every session of user ``<dept>_<user>`` and refuse its tokens issued until now
        (an ``admin`` token)."""
        return await (await self._engine()).call(PROC_ADMIN_REVOKE, user_key)

    async def receipt_updates(self) -> AsyncIterator[Counts]:
        """The new receipt counts of this user's notices, ``{"id", "audience", "seen",
        "delivered", "pending"}``, as the node publishes them (followed from the first call on);
        ends when the client is stopped.

        :raises DeptcastError: the error that stopped the client for good
        """
        engine = await self._engine()
        if not self._following:
            self._following = True
            engine.follow_receipts(self._enqueue_counts)
        while await self._ready(self._counts):
            yield self._counts.popleft()

    @property
    def details(self) -> Any:
        """The last session's join details (``authid``, ``authextra``)."""
        return self.engine.details if self.engine else None

    @property
    def stats(self) -> Optional[Stats]:
        return self.engine.stats if self.engine else None

    def positions(self) -> dict:
        """The last ``seq`` handled per topic."""
        return self.engine.positions() if self.engine else {}

    def _enqueue(self, envelope: Envelope) -> None:
        self._queue.append(envelope)
        self._wake()

    def _enqueue_counts(self, counts: Counts) -> None:
        self._counts.append(counts)
        self._wake()

    async def _ready(self, queue: Deque[Any]) -> bool:
        """Wait until ``queue`` holds something (``True``) or the client is stopped (``False``).

        :raises DeptcastError: the error that stopped the client for good
        """
        assert self.engine is not None
        while not queue:
            if self.engine.fatal is not None:
                raise self.engine.fatal
            if self._stopped:
                return False
            wakeup = asyncio.get_running_loop().create_future()
            self._wakeups.append(wakeup)
            await wakeup
        return True

    def _wake(self) -> None:
        wakeups, self._wakeups = self._wakeups, []
        for wakeup in wakeups:
            if not wakeup.done():
                wakeup.set_result(None)
