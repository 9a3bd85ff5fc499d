"""The authenticator and the dynamic authorizer: thin WAMP adapters over ``tokens`` and ``policy``.

Both procedures are registered under ``deptcast.internal.*``; clients can never call them
(the authorizer refuses every procedure outside :data:`policy.CLIENT_PROCEDURES`) and the
component itself joins over the node-local Unix socket only.
"""

from typing import Any, Dict

from autobahn.twisted.wamp import ApplicationSession
from autobahn.wamp.exception import ApplicationError
from twisted.internet.defer import inlineCallbacks

from components import names, policy
from components.config import ConfigError, load_settings
from components.errors import INVALID_TOKEN, Refused
from components.tokens import ROLES, Identity, verify_token


def identity_of(session: Dict[str, Any]) -> Identity:
    """The identity of a session as the router describes it to the authorizer.

    :raises KeyError: if the session carries no department (not a token session)
    :rtype: Identity
    """
    extra = session.get("authextra") or {}
    return Identity(user=session["authid"], dept=extra["dept"], role=session["authrole"])


class AuthComponent(ApplicationSession):
    """Registers the ticket authenticator and the authorizer of the ``member`` and
    ``publisher`` roles."""

    @inlineCallbacks
    def onJoin(self, details):
        try:
            self._settings = load_settings()
        except ConfigError as e:
            self.log.error("deptcast auth: cannot start: {error}", error=str(e))
            self.leave("deptcast.error.config", str(e))
            return
        if self._settings.dev:
            self.log.warn("deptcast auth: quick-start mode (DEPTCAST_DEV=1): the JWT secret is read from "
                          "{path}; do not use this mode in production", path=str(self._settings.node_dir / "jwt.secret"))
        yield self.register(self.authenticate, names.PROC_AUTHENTICATE)
        yield self.register(self.authorize, names.PROC_AUTHORIZE)
        self.log.info("deptcast auth: authenticator and authorizer ready on node {node}",
                      node=self._settings.node_name)

    def authenticate(self, realm: str, authid: str, details: Dict[str, Any]) -> Dict[str, Any]:
        if realm != names.REALM:
            raise ApplicationError(INVALID_TOKEN, f"unknown realm {realm!r}")
        try:
            identity = verify_token(self._settings.jwt_secret, details.get("ticket"), authid)
        except Refused as e:
            # never log the ticket itself: it is a bearer credential
            self.log.info("deptcast auth: refused a session (authid={authid}): {reason}",
                          authid=authid, reason=e.detail)
            raise ApplicationError(e.uri, e.detail)
        return {"authid": identity.user, "role": identity.role, "extra": {"dept": identity.dept}}

    def authorize(self, session: Dict[str, Any], uri: str, action: str, options: Dict[str, Any]):
        if session.get("authrole") not in ROLES:
            return False
        try:
            identity = identity_of(session)
        except KeyError:
            return False
        allow = policy.authorize(identity, uri, action, options or {})
        if action == "subscribe":
            # Crossbar caches per (realm, role, uri, action), not per session: a subscribe
            # decision depends on the session's department or user, so it must not be cached.
            return {"allow": allow, "cache": False}
        return {"allow": allow, "disclose": allow, "cache": True}
