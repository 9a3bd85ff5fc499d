"""The ticket authenticator and the dynamic authorizer: thin adapters over ``tokens`` and ``policy``.

The authenticator is a function Crossbar calls in the router worker (``"type": "function"``,
no round trip); the authorizer is the procedure ``deptcast.internal.authorize`` registered by
:class:`AuthorizerComponent`, a router component of the node (clients can never call it: the
authorizer refuses every procedure outside :data:`names.CLIENT_PROCEDURES`). The client roles ask
:func:`authorize` in-process instead (the patch ``roles.in_process`` of :mod:`components.upstream`,
which the node's composition root installs with this function).
"""

from typing import Any, Callable, Dict, Optional

from autobahn.wamp.exception import ApplicationError
import txaio

from components.core import names, policy
from components.core.errors import INVALID_TOKEN, Refused
from components.core.logsummary import host_of, printable
from components.core.settings import Settings
from components.core.tokens import DEFAULT_MAX_TOKEN_TTL, Identity
from components.service.refusals import RefusalLog
from components.service.runtime import runtime
from components.service.sessionlife import SessionLives
from components.upstream.registry import is_applied
from components.upstream.roles import IN_PROCESS
from components.wamp.base import NodeComponent

txaio.use_twisted()  # a Twisted module: its txaio loggers are Twisted's

log = txaio.make_logger()

#: seconds a sign-in on a starting node waits for the revocations in force to be read
LOAD_WAIT = 5.0


def identity_of(session: Dict[str, Any]) -> Identity:
    """The identity of a session as the router describes it to the authorizer.

    :raises KeyError: if the session carries no department (not a token session)
    :rtype: Identity
    """
    extra = session.get("authextra") or {}
    return Identity(user=session["authid"], dept=extra["dept"], role=session["authrole"])


def authenticator(secret: str, lives: Optional[SessionLives] = None,
                  max_ttl: int = DEFAULT_MAX_TOKEN_TTL) -> Callable[[str, str, Dict[str, Any]], Dict[str, Any]]:
    """The WAMP-Ticket authenticator for tokens signed with ``secret``: refuses revoked users'
    tokens (``lives``' revocations) and tokens living longer than ``max_ttl``; the session's
    authextra holds its department and its token's ``exp`` (and ``iat``), which
    :mod:`components.wamp.sessionlife` reads when the session joins.

    :rtype: callable ``(realm, authid, details) -> principal``
    """
    lives = lives if lives is not None else SessionLives(None, loaded=True)
    refusals = RefusalLog(log, "deptcast auth", "session", "sessions")

    def authenticate(realm: str, authid: str, details: Dict[str, Any]) -> Any:
        if not lives.loaded:
            # a starting node: wait (bounded) for the revocations in force before deciding
            return lives.when_loaded(LOAD_WAIT).addCallback(lambda _: decide(realm, authid, details))
        return decide(realm, authid, details)

    def decide(realm: str, authid: str, details: Dict[str, Any]) -> Dict[str, Any]:
        try:
            if realm != names.REALM:
                raise Refused(INVALID_TOKEN, f"unknown realm {realm!r}")
            grant = lives.grant(secret, details.get("ticket"), authid, max_ttl)
        except Refused as e:
            # never log the ticket itself: it is a bearer credential
            peer = (details.get("transport") or {}).get("peer")
            asked = f"authid {printable(authid, 64)}: " if authid else ""
            refusals.refused(e.uri, host_of(peer), asked + e.detail)
            raise ApplicationError(e.uri, e.detail)
        identity = grant.identity
        extra: Dict[str, Any] = {"dept": identity.dept, "exp": grant.exp}
        if grant.iat is not None:
            extra["iat"] = grant.iat
        return {"authid": identity.user, "role": identity.role, "extra": extra}
    return authenticate


def create_authenticator(config: Dict[str, Any], controller: Any = None):
    """Crossbar's factory for the ``function`` ticket authenticator of ``/ws``.

    :raises ConfigError: if the settings are bad (the node's log says which)
    """
    settings = runtime().settings()
    return authenticator(settings.jwt_secret, runtime().sessions, settings.max_token_ttl)


def authorize(session: Dict[str, Any], uri: str, action: str, options: Dict[str, Any]) -> Any:
    """The dynamic authorizer of the client roles: ``session`` as the router describes it
    (``authid``, ``authrole``, ``authextra`` with the department), the URI, the action and its
    options; answers Crossbar's ``{"allow", "disclose"?, "cache"}`` (``False`` for a session
    that is not a client's).

    :rtype: dict or bool
    """
    if session.get("authrole") not in names.CLIENT_ROLES:
        return False
    try:
        identity = identity_of(session)
    except KeyError:
        return False
    options = options or {}
    allow = policy.authorize(identity, uri, action, options)
    # Crossbar caches an answer per (realm, role, uri, action), not per session or options:
    # only answers that are the same for the whole role may say so
    cache = policy.same_for_role(uri, action, options)
    if action == "subscribe":
        return {"allow": allow, "cache": cache}
    return {"allow": allow, "disclose": allow, "cache": cache}


class AuthorizerComponent(NodeComponent):
    """Registers the authorizer of the ``member`` and ``publisher`` roles."""

    who = "auth"

    async def start(self, settings: Settings) -> None:
        if settings.dev:
            self.log.warn("deptcast auth: quick-start mode (DEPTCAST_DEV=1): the JWT secret is read from "
                          "{path}; do not use this mode in production", path=str(settings.node_dir / "jwt.secret"))
        await self.register(authorize, names.PROC_AUTHORIZE)
        self.log.info("deptcast auth: authorizer ready on node {node} ({how})", node=settings.node_name,
                      how=(f"asked in-process by the roles: {', '.join(names.CLIENT_ROLES)}"
                           if is_applied(IN_PROCESS.name) else f"asked through WAMP calls to {names.PROC_AUTHORIZE}"))
