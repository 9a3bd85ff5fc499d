"""The deptcast client for asyncio programs.

::

    from components.client.aio import Client

    async with Client("ws://localhost:8080/ws", token, state="alice.state") as client:
        await client.send("cardio", "Ward round moved to 10:30")
        async for envelope in client.events():
            print(envelope["sender"], "->", envelope["target"], ":", envelope["message"])

Importing this module selects asyncio for txaio (and so for Autobahn) in this process.
"""

import asyncio
from collections import deque
from pathlib import Path
from typing import Any, AsyncIterator, Deque, Optional, Sequence, Union

import txaio

txaio.use_asyncio()

from autobahn.asyncio.component import Component  # noqa: E402
from autobahn.asyncio.wamp import Session as AutobahnSession  # noqa: E402

from components.client.connector import Connector, parse_urls  # noqa: E402
from components.client.engine import Engine  # noqa: E402
from components.client.session import AcceptsLateMessages  # noqa: E402
from components.client.stats import Stats  # noqa: E402
from components.client.ticket import TokenSource  # noqa: E402
from components.client.state import FileState, PositionStore  # noqa: E402
from components.core.recovery import GAP_GRACE, Envelope  # noqa: E402

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
    :param token: a token, or a function returning one (or an awaitable of one), asked on every connect
    :param state: a state file path (or any :class:`~components.client.state.PositionStore`):
        a restarted client resumes there and gets what it missed
    :param history: on a first start (no state), yield the newest ``history`` envelopes first
    :param listen: ``False`` for a client that only sends (no subscriptions, no history)
    """

    def __init__(self, url: Union[str, Sequence[str]], token: TokenSource, *,
                 state: Union[None, str, Path, PositionStore] = None, history: int = 0,
                 gap_grace: float = GAP_GRACE, listen: bool = True) -> None:
        self._listen = listen
        self._urls = parse_urls(url)
        self._token = token
        if isinstance(state, (str, Path)):
            state = FileState(state)
        self._state = state
        self._history = history
        self._grace = gap_grace
        self._queue: Deque[Envelope] = deque()
        self._wakeup: Optional[asyncio.Future] = None
        self._stopped = False
        self.engine: Optional[Engine] = None
        self._connector: Optional[Connector] = None

    async def start(self) -> None:
        """Connect; returns once joined, subscribed and caught up.

        :raises DeptcastError: the error that stopped the client (e.g. :class:`TokenExpired`)
        """
        loop = asyncio.get_running_loop()
        if self.engine is None:
            self.engine = Engine(self._enqueue, loop.time, loop.call_later, state=self._state,
                                 history=self._history, grace=self._grace, listen=self._listen)
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
        if self.engine is None:
            await self.start()
        engine = self.engine
        assert engine is not None
        while True:
            while not self._queue:
                if engine.fatal is not None:
                    raise engine.fatal
                if self._stopped:
                    return
                self._wakeup = asyncio.get_running_loop().create_future()
                await self._wakeup
            envelope = self._queue.popleft()
            yield envelope
            engine.commit(envelope)  # the loop asked for the next one: this one is handled

    async def send(self, to: str, message: str, timeout: float = 30.0) -> Envelope:
        """Send ``message`` to ``to`` (a department code, ``"All"`` or ``<dept>_<user>``);
        the stored envelope.

        :raises DeptcastError: the exception of the error URI (``unavailable`` is retried
            within ``timeout``; see :meth:`Engine.send <components.client.engine.Engine.send>`)
        """
        if self.engine is None:
            await self.start()
        assert self.engine is not None
        return await self.engine.send(to, message, timeout)

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

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)
