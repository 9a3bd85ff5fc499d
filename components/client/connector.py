"""The connection of a client: an Autobahn ``Component`` over the node URLs (tried in turn,
with jittered back-off), WAMP-Ticket with a token asked on every connect, a new start
whenever the component ends unasked, and the failover when a node drains. Every session
that joins, and every one that is lost, is passed to the
:class:`~components.client.engine.Engine`.

Nothing here imports Twisted or asyncio: the front end passes its framework's ``Component``
class and timer.
"""

import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import txaio
from autobahn.wamp.exception import ApplicationError
from autobahn.websocket.util import parse_url

from components.client.timers import CallLater
from components.client.contract import CLOSE_REVOKED, CLOSE_TOKEN_EXPIRED
from components.client.engine import Engine
from components.client.errors import DeptcastError, Revoked, TokenExpired, error_for
from components.client.refresh import TokenKeeper
from components.client.renewal import is_revocation
from components.client.ticket import TicketAuthenticator, TokenSource, token_provider
from components.core import names
from components.core.errors import INVALID_TOKEN, TOKEN_EXPIRED
from components.core.retry import backoff

#: the default URL of ``deptcast listen`` and ``deptcast send``
DEFAULT_URL = "ws://localhost:8080/ws"


def parse_urls(values: Union[str, Sequence[str]]) -> List[str]:
    """Node URLs from a string or strings, each possibly comma-separated: a cluster's nodes
    or its load balancer.

    :raises ValueError: if there is none, or one is not a ``ws://`` or ``wss://`` URL
    :rtype: list
    """
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
    token (or a provider asked on every connect), the token renewed on the open session ahead
    of its expiry (:class:`~components.client.refresh.TokenKeeper`), and a new start whenever
    the component ends without being stopped.

    How a session's end is taken:

    - revoked (GOODBYE ``deptcast.close.revoked``, or ``invalid_token`` with the reason
      "revoked" at sign-in): the client stops with :class:`~components.client.errors.Revoked`,
      whatever the token; it never signs in again by itself;
    - the token expired (GOODBYE ``deptcast.close.token_expired``): a fixed token stops the
      client with :class:`~components.client.errors.TokenExpired`; a provider is asked for the
      next sign-in, at once;
    - a refused token at sign-in stops the client when the token is fixed; a provider is asked
      again on the next attempt, and the client stops after ``max_refusals`` refusals in a row.

    :param component_class: ``autobahn.twisted.component.Component`` or the asyncio one
    :param session_class: the sessions it makes (its ``session_factory``): the framework's
        ``Session`` with :class:`~components.client.session.AcceptsLateMessages`
    :param urls: node URLs
    :param token: a token or a provider
    :param engine: the engine the sessions go to
    :param call_later: the framework's timer (for restarts and renewals)
    :param wall: seconds since the epoch (tokens expire at one)
    """

    def __init__(self, component_class: Any, session_class: Any, urls: Sequence[str], token: TokenSource,
                 engine: Engine, call_later: CallLater, max_refusals: int = 3, max_delay: float = 20.0,
                 wall: Callable[[], float] = time.time) -> None:
        self.log = txaio.make_logger()
        provider, self._fixed = token_provider(token)
        self.engine = engine
        self._call_later = call_later
        self._max_refusals = max_refusals
        self._refusals = 0
        self._stopping = False
        self._restarts = 0
        self._restart_now = False
        self._loop: Any = None
        self._started = False
        self._session: Any = None
        self._done = txaio.create_future()
        self.tokens = TokenKeeper(provider, self._fixed, self.reconnect, call_later, engine.stats, engine.log,
                                  wall=wall)
        self.component = component_class(
            transports=[transport_config(u, max_delay) for u in urls], realm=names.REALM,
            authentication={"ticket": TicketAuthenticator(provider, self.tokens.signing_in)},
            is_fatal=self._is_fatal, session_factory=session_class)
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

    def reconnect(self) -> None:
        """Leave the open session and sign in again at once (asking the provider for the token);
        the engine resumes by position."""
        session = self._session
        if self._stopping or self.engine.fatal is not None or session is None or not session.is_attached():
            return
        self._restart_now = True
        try:
            session.leave()  # the component ends with the session; _ended starts it again at once
        except Exception as e:  # already leaving: it ends anyway
            self.log.debug("deptcast client: leaving for a new session: {e}", e=e)

    def _reset_transports(self) -> None:
        """Forget the transports' earlier attempts: Autobahn tries a transport at once while it
        has none (it counts attempts across sessions, and waits longer after each)."""
        for transport in getattr(self.component, "_transports", []):
            transport.reset()

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
        if self._restart_now:
            self._restart_now = False
            self._reset_transports()  # Autobahn would wait out the back-off of earlier attempts
            self._call_later(0, self._run)
            return None
        self._restarts += 1
        delay = backoff(self._restarts, base=1.0, cap=20.0)
        self.log.info("deptcast client: connection ended; starting again in {delay:.1f} s", delay=delay)
        self._call_later(delay, self._run)
        return None

    def _is_fatal(self, error: BaseException) -> bool:
        """Whether the component may not try again: the client is stopping or has stopped for
        good. Then every transport is marked failed, so the component ends now instead of
        trying the other URLs (Autobahn marks only the one that failed). A session's end that
        stops the client (:meth:`_ending`) is fatal too: Autobahn asks before the leave reaches
        :meth:`_on_leave`."""
        ending = None
        if isinstance(error, ApplicationError):
            ending = self._ending(error.error, _message_of(error))
        if self._stopping or self.engine.fatal is not None or ending is not None:
            for transport in getattr(self.component, "_transports", []):
                transport.failed()
            return True
        return False

    def _ending(self, reason: str, message: str) -> Optional[DeptcastError]:
        """The error that stops the client for a session's end (or a refusal at sign-in) with
        ``reason``, if it does: a revocation, or the expiry of a fixed token."""
        if reason == CLOSE_REVOKED or is_revocation(reason, message):
            return Revoked(message or "an administrator revoked this user's access", uri=reason)
        if reason == CLOSE_TOKEN_EXPIRED and self._fixed:
            return TokenExpired(message or "the session ended at the token's expiry; a fixed token cannot be "
                                "renewed (give the client a token provider)", uri=reason)
        return None

    def _on_join(self, session: Any, details: Any) -> None:
        if self._stopping:
            session.leave()
            return
        self._refusals = 0
        self._restarts = 0
        self._session = session
        self.engine.on_join(session, details)
        self.tokens.joined(session, details)

    def _forget(self, session: Any) -> None:
        if session is self._session:
            self._session = None
            self.tokens.lost()

    def _on_leave(self, session: Any, details: Any) -> None:
        reason = getattr(details, "reason", "") or ""
        message = getattr(details, "message", "") or ""
        current = self.engine.is_current(session)
        self._forget(session)
        ending = self._ending(reason, message)
        if ending is not None:
            self.engine.fail(ending)
        elif reason == CLOSE_TOKEN_EXPIRED:
            self._reset_transports()  # a new sign-in at once, with the provider's token
            self.log.warn("deptcast client: the session ended at the token's expiry (no newer token came in time); "
                          "signing in again with the provider's token")
        if reason == names.CLOSE_GOING_AWAY:
            # the node is stopping and asks its clients to go elsewhere now: the next attempt
            # goes at once, not after the back-off meant for a node that failed
            self._reset_transports()
            self.log.info("deptcast client: the node is stopping; reconnecting at once")
        if ending is None and reason in (INVALID_TOKEN, TOKEN_EXPIRED) and not current:
            self._refusals += 1
            error = error_for(reason, message)
            if self._fixed or self._refusals >= self._max_refusals:
                self.engine.fail(error)
            else:
                self.log.warn("deptcast client: token refused ({error}); asking the provider again",
                              error=str(error))
        self.engine.on_leave(session, details)

    def _on_disconnect(self, session: Any, was_clean: bool) -> None:
        self._forget(session)
        self.engine.on_disconnect(session, was_clean)


def _message_of(error: ApplicationError) -> str:
    """The text of an ABORT or GOODBYE that Autobahn turned into an ``ApplicationError``."""
    if error.args and isinstance(error.args[0], str):
        return error.args[0]
    return ""
