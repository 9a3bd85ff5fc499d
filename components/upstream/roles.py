"""The client roles' authorizer, asked in-process instead of through a WAMP call (one patch:
``roles.in_process``).

The node config gives ``member`` and ``publisher`` Crossbar's dynamic authorizer: for each
decision it does not have cached, Crossbar's ``RouterRoleDynamicAuth`` calls the procedure
``deptcast.internal.authorize`` from the realm's service session, a round trip through the
dealer. Each new client needs two (its department and its user topic depend on the session:
never cached), and in a storm of 2,000 connections these calls were about a seventh of the
router worker's CPU (py-spy, ``bench/compare.py``'s storm). The procedure's function runs in
the same worker, so the patch puts in each client role's place a role that calls it directly
(the node passes it in: ``Wiring.authorize``), with the session's details as Crossbar would
pass them (``session``, ``authid``, ``authrole``, ``authmethod``, ``authprovider``,
``authextra``): the same decisions, the same answers (and the same caching, which is the
router's, around the role), without the call. The procedure stays registered.
"""

from typing import Any, Callable, Dict, List, Optional, Tuple

from crossbar.router.role import RouterRole, RouterRoleDynamicAuth

from components.core.names import CLIENT_ROLES, PROC_AUTHORIZE
from components.upstream.registry import Patch, Wiring, register
from components.upstream.worker import DYNAMIC_AUTHORIZER, session_details

#: ``(session details, uri, action, options) -> answer``: the authorizer's function
Authorize = Callable[[Dict[str, Any], str, str, Dict[str, Any]], Any]


class InProcessRole(RouterRole):
    """A client role whose decisions are ``authorize``'s, called in-process.

    :param replaces: the dynamic role it stands in for (put back when the patch is undone)
    """

    def __init__(self, router: Any, uri: str, authorize: Authorize, replaces: Any) -> None:
        RouterRole.__init__(self, router, uri)
        self.decide = authorize
        self.replaces = replaces

    def authorize(self, session: Any, uri: str, action: str, options: Dict[str, Any]) -> Any:
        return self.decide(session_details(session), uri, action, options)


#: (router, role) of each role put in place, to put back
_replaced: List[Tuple[Any, InProcessRole]] = []


def _dynamic_roles(router: Any, roles: Tuple[str, ...], procedure: str) -> Dict[str, Any]:
    """The dynamic roles of ``roles`` that ask ``procedure`` (those missing or of another kind
    are left out)."""
    held = getattr(router, "_roles", None)
    found = {}
    for uri in roles:
        current = held.get(uri) if isinstance(held, dict) else None
        if isinstance(current, InProcessRole):
            current = current.replaces  # in place already
        if isinstance(current, RouterRoleDynamicAuth) and getattr(current, "_authorizer", None) == procedure:
            found[uri] = current
    return found


def _shape(wiring: Wiring) -> Optional[str]:
    if wiring.authorize is None:
        return "no authorizer to call"
    missing = [uri for uri in CLIENT_ROLES if uri not in _dynamic_roles(wiring.router, CLIENT_ROLES, PROC_AUTHORIZE)]
    if missing:
        return (f"the node config's role(s) {', '.join(missing)} are not Crossbar dynamic-authorizer roles of "
                f"{PROC_AUTHORIZE}: they are asked as configured")
    return None


def _in_process(wiring: Wiring) -> None:
    router, authorize = wiring.router, wiring.authorize
    assert authorize is not None  # (the shape check)
    for uri, dynamic in _dynamic_roles(router, CLIENT_ROLES, PROC_AUTHORIZE).items():
        role = InProcessRole(router, uri, authorize, dynamic)
        router.add_role(role)
        _replaced.append((router, role))


def _put_back() -> None:
    while _replaced:
        router, role = _replaced.pop()
        if router._roles.get(role.uri) is role:
            router.add_role(role.replaces)


IN_PROCESS = register(Patch(
    name="roles.in_process",
    replaces=("crossbar.router.role.RouterRoleDynamicAuth.authorize",),
    checked={
        **DYNAMIC_AUTHORIZER,
        "crossbar.router.role.RouterRoleDynamicAuth.__init__":
            "85f408b13ccf72c0d0961d51c5eba4c693db80debd913315f8c81b1ddff6f92d",
        "crossbar.router.role.RouterRole.__init__":
            "94f114b1de17cfdaf8eb93284b9f1dbd6c16a16b5011d5a3c4ca465c31b930d4",
        # roles by URI, replaced by add_role, asked (and their answers cached) by authorize
        "crossbar.router.router.Router.add_role":
            "66b1b56206a1fa7f739a28a9a1abe9b56e1a6626b9abf516181091692fe33e6a",
        "crossbar.router.router.Router.authorize":
            "ae01aca6104577857597c07c9b321246083762748ac10b012714e0839a7c6d7c",
    },
    why="each decision of the client roles' dynamic authorizer is a WAMP call through the dealer, two per new "
        "client (never cached: they depend on the session): about a seventh of the router worker's CPU in a "
        "storm of 2,000 connections",
    remove_when="Crossbar offers an in-process authorizer (a function, as it does for authenticators)",
    apply=_in_process,
    undo=_put_back,
    shape=_shape,
))

#: the one patch of this area
PATCHES = (IN_PROCESS,)

__all__ = ["IN_PROCESS", "PATCHES", "InProcessRole"]
