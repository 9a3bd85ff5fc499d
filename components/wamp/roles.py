"""The client roles' authorizer, asked in-process instead of through a WAMP call.

The node config gives ``member`` and ``publisher`` Crossbar's dynamic authorizer: for each
decision it does not have cached, Crossbar's ``RouterRoleDynamicAuth`` calls the procedure
``deptcast.internal.authorize`` from the realm's service session, a round trip through the
dealer. Each new client needs two (its department and its user topic depend on the session:
never cached), and in a storm of 2,000 connections these calls were about a seventh of the
router worker's CPU (py-spy, ``bench/compare.py``'s storm). The procedure is a method of a
router component in the same worker, so :func:`install` puts in each client role's place a
role that calls that method directly, with the session's details as Crossbar would pass them
(``session``, ``authid``, ``authrole``, ``authmethod``, ``authprovider``, ``authextra``): the
same decisions, the same answers (and the same caching, which is the router's, around the
role), without the call. The procedure stays registered.

Written against Crossbar 26.10 (``constraints.txt``): it replaces a role only where the
router holds a ``RouterRoleDynamicAuth`` for ``deptcast.internal.authorize`` (the router's
``_roles``, ``add_role``, the role's ``_authorizer``), and leaves the roles as they
are otherwise (the decisions are then the WAMP calls' as before, and the node logs a warning);
``tests/unit/test_roles.py`` checks this against a real Crossbar router.
"""

from typing import Any, Callable, Dict, List

import txaio

try:
    from crossbar.router.role import RouterRole, RouterRoleDynamicAuth
except ImportError:  # pragma: no cover - Crossbar is what runs the node
    RouterRole = RouterRoleDynamicAuth = None

from components.wamp import worker

txaio.use_twisted()  # a Twisted module: its txaio loggers are Twisted's

log = txaio.make_logger()

#: ``(session details, uri, action, options) -> answer``: the authorizer's method
Authorize = Callable[[Dict[str, Any], str, str, Dict[str, Any]], Any]


if RouterRole is not None:
    class InProcessRole(RouterRole):
        """A client role whose decisions are ``authorize``'s, called in-process.

        :param replaces: the dynamic role it stands in for (put back by :func:`uninstall`)
        """

        def __init__(self, router: Any, uri: str, authorize: Authorize, replaces: Any) -> None:
            RouterRole.__init__(self, router, uri)
            self.decide = authorize
            self.replaces = replaces

        def authorize(self, session: Any, uri: str, action: str, options: Dict[str, Any]) -> Any:
            return self.decide(worker.session_details(session), uri, action, options)


def install(router: Any, roles: List[str], procedure: str, authorize: Authorize) -> List[str]:
    """Put an :class:`InProcessRole` in place of each of ``roles`` whose dynamic authorizer is
    ``procedure``.

    :returns: the roles replaced (a role that is missing or is not that dynamic role is left
        as it is, with a warning)
    :rtype: list
    """
    replaced = []
    held = getattr(router, "_roles", None)
    for uri in roles:
        current = held.get(uri) if isinstance(held, dict) else None
        if RouterRole is not None and isinstance(current, InProcessRole):
            current = current.replaces  # installed before (the component joined again)
        if RouterRoleDynamicAuth is None or not isinstance(current, RouterRoleDynamicAuth) \
                or getattr(current, "_authorizer", None) != procedure:
            log.warn("deptcast auth: role {role} is asked through WAMP calls to {procedure} (this Crossbar "
                     "version's roles are not what deptcast knows)", role=uri, procedure=procedure)
            continue
        router.add_role(InProcessRole(router, uri, authorize, current))
        replaced.append(uri)
    return replaced


def uninstall(router: Any, roles: List[str]) -> None:
    """Put back the dynamic roles :func:`install` replaced."""
    held = getattr(router, "_roles", None)
    for uri in roles:
        current = held.get(uri) if isinstance(held, dict) else None
        if RouterRole is not None and isinstance(current, InProcessRole):
            router.add_role(current.replaces)
