"""Session life over WAMP: ``deptcast.session.refresh``, ``deptcast.admin.revoke``, and the
end of sessions at their token's ``exp`` or at a revocation (see
:mod:`components.service.sessionlife`, which decides; this is the adapter).

The component follows client sessions through the meta API (``wamp.session.on_join`` and
``on_leave``; the authenticator put the token's ``exp`` and ``iat`` in the session's authextra)
and ends one with the meta procedure ``wamp.session.kill``, which sends the client a GOODBYE
with the reason (``deptcast.close.token_expired`` or ``deptcast.close.revoked``). A client
that has not answered its GOODBYE :data:`GOODBYE_GRACE` seconds later is cut off (its
connection aborted: :func:`components.upstream.sessions.cut_off`).

It also runs the node's :class:`~components.service.sessionlife.RevocationPoller` once the
store is ready, so revocations reach this node within about half a second, and all of them at
start.
"""

import functools
from typing import Any, Dict, Optional

from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import RegisterOptions
from twisted.internet import defer, reactor, task

from components.core import names
from components.core.errors import NOT_AUTHORIZED, Refused
from components.core.settings import Settings
from components.core.tokens import Grant, Identity
from components.service.runtime import runtime
from components.service.sessionlife import RevocationPoller
from components.upstream import sessions
from components.upstream.worker import router_of
from components.wamp.base import NodeComponent, client_errors, scan_sessions
from components.wamp.callers import Callers

#: seconds a call waits for the message service (and its store) while the root (re)starts it
READY_TIMEOUT = 10.0
#: seconds between two looks for the store being ready, before the poll of revocations starts
STORE_WAIT = 0.5
#: seconds a client has to answer the GOODBYE that ends its session before its connection is aborted
GOODBYE_GRACE = 2.0


def _seconds(value: Any) -> Optional[int]:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class SessionLifeComponent(NodeComponent):
    """Ends client sessions at ``exp`` and at revocations; registers refresh and revoke."""

    who = "sessions"

    async def start(self, settings: Settings) -> None:
        self._lives = runtime().sessions
        self._callers = Callers(self)
        self._left: set = set()  # sessions that left during the start scan
        self._scanning = True
        self._ending: Dict[int, Any] = {}
        self._poller: Optional[RevocationPoller] = None
        await self.follow_meta(self._on_join, "wamp.session.on_join")
        await self.follow_meta(self._on_leave, "wamp.session.on_leave")
        opts = RegisterOptions(details_arg="details")
        await self.register(self.refresh, names.PROC_SESSION_REFRESH, options=opts)
        await self.register(self.revoke, names.PROC_ADMIN_REVOKE, options=opts)
        # sessions that joined before this component (it restarted): follow them too
        await scan_sessions(self, list(names.CLIENT_ROLES), self._lives.known, self._left, self._follow)
        self._scanning = False
        self._left.clear()
        self._waiting = task.LoopingCall(self._start_poller)
        self._waiting.start(STORE_WAIT, now=True)
        self.log.info("deptcast sessions: expiry, refresh and revocation ready on node {node}",
                      node=settings.node_name)

    def _start_poller(self) -> None:
        service = runtime().messages.value
        if service is None or not service.store_ready:
            return
        self._waiting.stop()
        self._poller = RevocationPoller(self._lives, service.store, self.settings.max_token_ttl, reactor)
        self._poller.start()

    # -- following sessions

    def _on_join(self, info: Dict[str, Any], *args, **kwargs) -> None:
        self._follow(info)

    def _follow(self, info: Dict[str, Any]) -> None:
        if info.get("authrole") not in names.CLIENT_ROLES:
            return
        extra = info.get("authextra") or {}
        session_id, dept, user = info.get("session"), extra.get("dept"), info.get("authid")
        if not isinstance(session_id, int) or not names.is_name(dept) or not names.is_name(user):
            return
        self._lives.joined(session_id, dept, user, _seconds(extra.get("iat")), _seconds(extra.get("exp")),
                           functools.partial(self._kill, session_id))

    def _on_leave(self, session_id: int, *args, **kwargs) -> None:
        if self._scanning:
            self._left.add(session_id)
        timer = self._ending.pop(session_id, None)
        if timer is not None and timer.active():
            timer.cancel()
        self._callers.forget(session_id)
        self._lives.left(session_id)

    @defer.inlineCallbacks
    def _kill(self, session_id: int, reason: str):
        message = ("the token expired; sign in again with a new token" if reason == names.CLOSE_TOKEN_EXPIRED
                   else "an administrator revoked this user's access")
        try:
            yield self.call("wamp.session.kill", session_id, reason=reason, message=message)
        except ApplicationError:
            return  # it left meanwhile
        except Exception as e:
            self.log.warn("deptcast sessions: could not end session {sid}: {e}", sid=session_id, e=str(e))
        # (a session that left already is not in the router's map: cut_off finds nothing)
        self._ending[session_id] = reactor.callLater(GOODBYE_GRACE, self._cut_off, session_id)

    def _cut_off(self, session_id: int) -> None:
        self._ending.pop(session_id, None)
        if sessions.cut_off(router_of(self), session_id):
            self.log.info("deptcast sessions: session {sid} did not answer its GOODBYE in {grace} s: cut off",
                          sid=session_id, grace=GOODBYE_GRACE)

    # -- procedures

    @client_errors("deptcast sessions")
    async def refresh(self, token=None, *args, details=None, **kwargs):
        """``deptcast.session.refresh(token)``: a newer token for the same identity and role."""
        identity: Identity = await self._callers.identity(details)
        settings = self.settings
        grant: Grant = self._lives.grant(settings.jwt_secret, token, max_ttl=settings.max_token_ttl)
        if grant.identity != identity:
            raise Refused(NOT_AUTHORIZED, "the token is for another user, department or role: sign in again with it")
        session_id = details.caller
        if not self._lives.known(session_id):
            raise Refused(NOT_AUTHORIZED, "this session is not one that can be refreshed")
        current = self._lives.exp_of(session_id)
        if current is not None and grant.exp <= current:
            raise Refused(NOT_AUTHORIZED, "the token does not expire later than the session's")
        self._lives.refreshed(session_id, grant)
        return {"exp": grant.exp}

    @client_errors("deptcast sessions")
    async def revoke(self, user_key=None, *args, details=None, **kwargs):
        """``deptcast.admin.revoke(user_key)``: ``admin`` only (the authorizer refuses the others)."""
        identity: Identity = await self._callers.identity(details)
        if not identity.is_admin:
            raise ApplicationError("wamp.error.not_authorized", "admin role only")
        service = await runtime().messages.get(READY_TIMEOUT)
        return await self._lives.record_revocation(service.store, user_key)

    def onLeave(self, details):
        for timer in self._ending.values() if hasattr(self, "_ending") else ():
            if timer.active():
                timer.cancel()
        waiting = getattr(self, "_waiting", None)
        if waiting is not None and waiting.running:
            waiting.stop()
        poller = getattr(self, "_poller", None)
        if poller is not None:
            poller.stop()
        super().onLeave(details)

