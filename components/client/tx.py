"""The deptcast client for Twisted programs: callbacks and Deferreds.

::

    from components.client.tx import Client

    client = Client("ws://localhost:8080/ws", token)

    @client.on_envelope
    def show(envelope):
        print(envelope["sender"], "->", envelope["target"], ":", envelope["message"])

    yield client.start()                      # joined, subscribed and caught up
    envelope = yield client.send("cardio", "Ward round moved to 10:30")

``token`` is a string (a fixed token: the session ends at its ``exp``) or a function that
returns one (asked on every connect, and ahead of ``exp`` for a newer token that the open
session takes without a reconnect).

Importing this module selects Twisted for txaio (and so for Autobahn) in this process.
"""

from collections import deque
from pathlib import Path
from typing import Any, Callable, Deque, Mapping, Optional, Sequence, Union

import txaio

txaio.use_twisted()

from autobahn.twisted.component import Component
from autobahn.twisted.wamp import Session as AutobahnSession
from twisted.internet import defer
from twisted.python.failure import Failure

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

Handler = Callable[[Envelope], Any]


class Client:
    """One deptcast user, subscribed to its department, ``deptcast.all`` and its own direct
    messages, handing each envelope to ``on_envelope`` exactly once, in per-topic order,
    across reconnects and node failover.

    Envelopes are handed over one at a time: when the handler returns a Deferred, the next
    waits until it fires. An envelope counts as handled (and, with ``state``, saved as the
    position) when the handler returns or its Deferred fires; a handler that raises is
    logged and its envelope counts as handled too (it is not retried).

    :param url: a node URL, or several (a list, or comma-separated): tried in turn
    :param token: a token, or a function returning one (or a Deferred of one), asked on every
        connect and ahead of the token's expiry (a fixed token ends its session at ``exp``:
        :meth:`when_stopped` then fails with :class:`~components.client.errors.TokenExpired`)
    :param on_envelope: the handler (or set it later with the :meth:`on_envelope` decorator)
    :param state: a state file path (or any :class:`~components.client.state.PositionStore`):
        a restarted client resumes there and gets what it missed
    :param history: on a first start (no state), hand over the newest ``history`` envelopes first
    :param reactor: the reactor (default: the global one)
    :param listen: ``False`` for a client that only sends (no subscriptions, no history)
    :param acknowledge: acknowledge ``delivered`` for every envelope handed over (default)
    """

    def __init__(self, url: Union[str, Sequence[str]], token: TokenSource, on_envelope: Optional[Handler] = None,
                 *, state: Union[None, str, Path, PositionStore] = None, history: int = 0,
                 reactor: Any = None, gap_grace: float = GAP_GRACE, listen: bool = True,
                 acknowledge: bool = True) -> None:
        if reactor is None:
            from twisted.internet import reactor  # here: importing it installs the global reactor
        self._reactor = reactor
        self._handler = on_envelope
        self._queue: Deque[Envelope] = deque()
        self._busy = False
        self._pumping = False
        if isinstance(state, (str, Path)):
            state = FileState(state)
        self._state = state
        self.engine = Engine(self._enqueue, reactor.seconds, reactor.callLater, state=state, history=history,
                             grace=gap_grace, listen=listen, acknowledge=acknowledge)
        self._connector = Connector(Component, Session, parse_urls(url), token, self.engine, reactor.callLater)
        self._stopped: Optional[defer.Deferred] = None
        self._started = False

    def on_envelope(self, handler: Handler) -> Handler:
        """Set the handler (usable as a decorator)."""
        self._handler = handler
        self._pump()
        return handler

    def start(self) -> defer.Deferred:
        """Connect; fires once joined, subscribed and caught up (or fails with the error that
        stopped the client, e.g. :class:`~components.client.errors.TokenExpired`)."""
        ready = self.engine.ready()
        if not self._started:
            self._started = True
            self._connector.start(self._reactor)
        return ready

    def send(self, to: str, message: str, timeout: float = 30.0, key: Optional[str] = None) -> defer.Deferred:
        """Send ``message`` to ``to`` (a department code, ``"All"`` or ``<dept>_<user>``);
        fires with the stored envelope or fails with the exception of the error URI. One
        idempotency ``key`` per notice (a new one unless given), used on every retry within
        ``timeout`` (see :meth:`Engine.send <components.client.engine.Engine.send>`)."""
        return defer.ensureDeferred(self.engine.send(to, message, timeout, key))

    def send_batch(self, items: Sequence[Mapping[str, Any]], timeout: float = 60.0) -> defer.Deferred:
        """Send up to 1,000 notices ``{"to", "message", "key"?}`` in one call; fires with one
        result per item, in order: the envelope or ``{"error", "detail"}`` (see
        :meth:`Engine.send_batch <components.client.engine.Engine.send_batch>`)."""
        return defer.ensureDeferred(self.engine.send_batch(items, timeout))

    def receipts(self, envelope_id: str) -> defer.Deferred:
        """The receipt counts of a notice this user sent: ``{"id", "audience", "seen",
        "delivered", "pending"}``."""
        return defer.ensureDeferred(self.engine.receipts(envelope_id))

    def recipients(self, envelope_id: str, state: str, after: Optional[str] = None,
                   limit: int = 200) -> defer.Deferred:
        """One page of who is in ``state`` (``"seen"``, ``"delivered"``, ``"pending"``):
        ``{"users": [{"dept", "user", "at"}], "next"}``; pass ``next`` as ``after`` for more."""
        return defer.ensureDeferred(self.engine.recipients(envelope_id, state, after, limit))

    def ack_seen(self, ids: Sequence[str]) -> None:
        """The user saw these notices (acknowledged as ``seen`` with the next batch)."""
        self.engine.ack_seen(ids)

    def on_receipts(self, listener: Callable[[Counts], Any]) -> Callable[[Counts], Any]:
        """Call ``listener(counts)`` with the new receipt counts of this user's notices as the
        node publishes them (followed from now on; usable as a decorator)."""
        self.engine.follow_receipts(listener)
        return listener

    def roster(self, dept: str) -> defer.Deferred:
        """The department's known members: ``{"dept", "users": [{"user", "first_seen",
        "last_seen", "source"}]}``."""
        return defer.ensureDeferred(self.engine.call(PROC_ROSTER, dept))

    def revoke(self, user_key: str) -> defer.Deferred:
        """End every session of user ``<dept>_<user>`` and refuse its tokens issued until now
        (an ``admin`` token)."""
        return defer.ensureDeferred(self.engine.call(PROC_ADMIN_REVOKE, user_key))

    def stop(self) -> defer.Deferred:
        """Leave, stop reconnecting, release the state file."""
        if self._stopped is None:
            d = self._connector.stop()
            d.addBoth(self._release)
            self._stopped = d
        return self._stopped

    def when_stopped(self) -> defer.Deferred:
        """Fires when the client stops for good: after :meth:`stop`, or failing with the
        error that stopped it (a refused token, an unusable state file)."""
        d: defer.Deferred = defer.Deferred()
        if self.engine.fatal is not None:
            d.errback(Failure(self.engine.fatal))
        else:
            def stopped(error: Optional[BaseException]) -> None:
                if d.called:
                    return
                if error is not None:
                    d.errback(Failure(error))
                else:
                    d.callback(None)

            self.engine.on_fatal(stopped)
            self._connector._done.addCallback(lambda _: stopped(None))
        return d

    def on_connection(self, listener: Callable[[bool, Any], None]) -> None:
        """Call ``listener(True, details)`` each time a session has joined and caught up,
        ``listener(False, None)`` each time one is lost (the client reconnects by itself)."""
        self.engine.on_connection(listener)

    @property
    def details(self) -> Any:
        """The last session's join details (``authid``, ``authextra``)."""
        return self.engine.details

    @property
    def session(self) -> Any:
        """The joined Autobahn session, or ``None`` while reconnecting."""
        return self.engine.session

    @property
    def stats(self) -> Stats:
        return self.engine.stats

    def positions(self) -> dict:
        """The last ``seq`` handled per topic."""
        return self.engine.positions()

    # -- handing envelopes over, one at a time

    def _enqueue(self, envelope: Envelope) -> None:
        self._queue.append(envelope)
        self._pump()

    def _pump(self) -> None:
        if self._pumping or self._handler is None:
            return
        self._pumping = True
        try:
            while self._queue and not self._busy and self.engine.fatal is None:
                envelope = self._queue.popleft()
                self._busy = True
                d = defer.maybeDeferred(self._handler, envelope)
                d.addErrback(self._handler_failed)
                d.addCallback(self._handled, envelope)
        finally:
            self._pumping = False

    def _handler_failed(self, failure: Failure) -> None:
        self.engine.log.failure("deptcast client: the envelope handler failed", failure=failure)

    def _handled(self, _: Any, envelope: Envelope) -> None:
        self._busy = False
        try:
            self.engine.commit(envelope)
        except Exception:
            return  # the engine has stopped the client (the state file could not be written)
        self._pump()

    def _release(self, result: Any) -> Any:
        if isinstance(self._state, FileState):
            self._state.unlock()
        return result
