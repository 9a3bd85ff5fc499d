"""Keeping the open session's token fresh (the rules are :mod:`components.client.renewal`).

A session lives no longer than its token: at ``exp`` the node ends it with GOODBYE
``deptcast.close.token_expired``, unless the client has handed it a newer token of the same
user, department and role with ``deptcast.session.refresh(token)``. A :class:`TokenKeeper`
does that from the client's token provider, ahead of ``exp``: no reconnect, nothing missed.

- The provider gives a newer token: it is handed over; the node's answer ``{"exp"}`` is the
  session's new end, from which the next renewal is planned.
- The node refuses it as another identity or role (``deptcast.error.not_authorized``), or does
  not offer the procedure (the router's ``no_such_procedure`` or ``not_authorized``): the
  client reconnects now, signing in with the provider's token, and resumes by position.
- ``unavailable``, ``rate_limited`` or a lost answer: handed over again shortly, while the
  token lasts. Any other refusal: the session keeps its token, and the provider is asked again.
- The provider gives nothing newer (or fails): asked again shortly, while the token lasts.
- A token of the same user with another role: reconnect with it. Of another user: ignored.

A fixed token (a string) is never renewed: its session ends at ``exp``.
"""

import inspect
import time
from typing import Any, Callable, Optional

import txaio
from autobahn.wamp.exception import ApplicationError, TransportLost

from components.client import contract, renewal
from components.client.timers import CallLater, cancel
from components.client.stats import Stats
from components.core.errors import NOT_AUTHORIZED, RATE_LIMITED, UNAVAILABLE


class TokenKeeper:
    """Renews the open session's token from ``provider`` (see the module).

    :param provider: the client's token provider (asked for a newer token)
    :param fixed: the token is a string: never renewed
    :param reconnect: leave the session and sign in again at once (with the provider's token)
    :param call_later: the framework's timer
    :param stats: the client's counts (``refreshes``, ``refresh_reconnects``)
    :param log: the client's logger
    :param wall: seconds since the epoch (``exp`` is one)
    :param rand: ``random.random``
    """

    def __init__(self, provider: Callable[[], Any], fixed: bool, reconnect: Callable[[], None],
                 call_later: CallLater, stats: Stats, log: Any, wall: Callable[[], float] = time.time,
                 rand: Optional[Callable[[], float]] = None) -> None:
        self._provider = provider
        self._fixed = fixed
        self._reconnect = reconnect
        self._call_later = call_later
        self.stats = stats
        self.log = log
        self._wall = wall
        self._rand = rand
        #: the token the next session signs in with was given by the provider (told by the authenticator)
        self._signing_in: Optional[str] = None
        #: the token the open session holds, and when it got it
        self.in_use: Optional[str] = None
        self._received_at = 0.0
        #: when the open session ends (seconds since the epoch), as the node or the token says
        self.session_exp: Optional[float] = None
        self._session: Any = None
        self._generation = 0
        self._timer: Any = None
        self._asking = False

    # -- told by the connector

    def signing_in(self, token: Any) -> None:
        """The authenticator gave ``token`` to the node for the session being opened."""
        self._signing_in = token if isinstance(token, str) else None

    def joined(self, session: Any, details: Any) -> None:
        """A session joined with the token the authenticator gave last: plan its renewal."""
        self._generation += 1
        self._session = session
        self.in_use = self._signing_in
        self._received_at = self._wall()
        claims = renewal.claims_of(self.in_use) or {}
        exp = renewal.as_seconds((getattr(details, "authextra", None) or {}).get("exp"))
        self.session_exp = exp if exp is not None else claims.get("exp")
        self._plan()

    def lost(self) -> None:
        """No session any more: nothing to renew until the next one."""
        self._generation += 1
        self._session = None
        self.in_use = None
        self.session_exp = None
        self._cancel()

    # -- the plan

    def _cancel(self) -> None:
        if self._timer is not None:
            cancel(self._timer)
        self._timer = None

    def _after(self, delay: float, fn: Callable[[], Any]) -> None:
        self._cancel()
        generation = self._generation

        def run() -> None:
            self._timer = None
            if generation == self._generation:
                d = txaio.as_future(fn)
                txaio.add_callbacks(d, None, self._failed)
        self._timer = self._call_later(max(0.0, delay), run)

    def _failed(self, failure: Any) -> None:
        self.log.failure("deptcast client: renewing the token failed", failure=failure)

    def _plan(self) -> None:
        """Ask the provider ahead of the open session's end."""
        self._cancel()
        if self._fixed or self._session is None:
            return
        claims = renewal.claims_of(self.in_use) or {}
        kwargs = {} if self._rand is None else {"rand": self._rand}
        at = renewal.refresh_at(self.session_exp, claims.get("iat"), self._received_at, **kwargs)
        if at is not None:
            self._after(at - self._wall(), self._ask)

    def _again(self, fn: Callable[[], Any]) -> None:
        wait = renewal.retry_before_expiry(self.session_exp, self._wall())
        if wait is not None:
            self._after(wait, fn)

    async def _ask(self) -> None:
        if self._session is None or self._asking:
            return
        generation = self._generation
        self._asking = True
        try:
            token = self._provider()
            if inspect.isawaitable(token) or txaio.is_future(token):
                token = await token
        except Exception as e:
            self.log.warn("deptcast client: the token provider failed: {error}", error=str(e) or type(e).__name__)
            token = None
        finally:
            self._asking = False
        if generation != self._generation:
            return  # the session went meanwhile: the next one signs in with the provider's token
        kind = renewal.compare_tokens(self.in_use, token)
        if kind == renewal.NEWER:
            await self._hand_over(token)
        elif kind == renewal.ROLE:
            self.log.info("deptcast client: the new token has another role; signing in again with it")
            self._reconnect_for_it()
        else:
            if kind == renewal.IDENTITY:
                self.log.warn("deptcast client: the token provider gave a token of another user; ignored "
                              "(one client is one user)")
            self._again(self._ask)

    def _reconnect_for_it(self) -> None:
        self.stats.refresh_reconnects += 1
        self._cancel()
        self._reconnect()

    async def _hand_over(self, token: str) -> None:
        """Give the open session the newer ``token``."""
        generation, session = self._generation, self._session
        try:
            answer = await session.call(contract.PROC_SESSION_REFRESH, token)
        except (ApplicationError, TransportLost) as e:
            if generation != self._generation:
                return
            uri = e.error if isinstance(e, ApplicationError) else "wamp.close.transport_lost"
            if uri == NOT_AUTHORIZED or contract.not_offered(uri):
                self.log.info("deptcast client: the node takes the new token only on a new session ({uri}); "
                              "signing in again with it", uri=uri)
                self._reconnect_for_it()
            elif uri in (UNAVAILABLE, RATE_LIMITED) or uri.startswith("wamp.close."):
                self._again(lambda: self._hand_over(token))
            else:
                self.log.warn("deptcast client: the node refused the new token ({uri}); the session keeps "
                              "the one it has", uri=uri)
                self._again(self._ask)
            return
        if generation != self._generation:
            return
        self.in_use = token
        self._received_at = self._wall()
        exp = renewal.as_seconds(answer.get("exp")) if isinstance(answer, dict) else None
        self.session_exp = exp if exp is not None else (renewal.claims_of(token) or {}).get("exp")
        self.stats.refreshes += 1
        self.log.debug("deptcast client: token renewed on the open session; it ends at {exp}", exp=self.session_exp)
        self._plan()
