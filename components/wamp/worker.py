"""What deptcast reads from, and does to, the Crossbar router worker its components run in.

A router component's session is attached to its router in-process; through it this module
reaches the router's message counts, the realm's router links, and the worker's web
transport (its listening port and its paths). These are Crossbar's own objects, not an API:
every function here is written against Crossbar 26.10 (``constraints.txt``), checks what it
touches, and answers ``None`` / nothing when the shape differs, so an upgrade that moves them
degrades ``/health`` and ``/metrics`` instead of breaking the node (the integration tests
notice).
"""

from typing import Any, Dict, List, Optional, Tuple

from twisted.internet import defer


def router_of(session: Any) -> Optional[Any]:
    """The :class:`crossbar.router.router.Router` a router component's session is attached to.

    :rtype: Router or None
    """
    return getattr(getattr(session, "_transport", None), "_router", None)


def session_details(session: Any) -> Dict[str, Any]:
    """What the dynamic authorizer is told about a router session (without its transport,
    which deptcast does not read): ``session``, ``authid``, ``authrole``, ``authmethod``,
    ``authprovider``, ``authextra``.

    :rtype: dict
    """
    details = getattr(session, "_session_details", None)
    if details is None:
        return {"session": session._session_id, "authid": session._authid, "authrole": session._authrole,
                "authmethod": session._authmethod, "authprovider": session._authprovider,
                "authextra": session._authextra}
    return {"session": details.session, "authid": details.authid, "authrole": details.authrole,
            "authmethod": details.authmethod, "authprovider": details.authprovider,
            "authextra": details.authextra}


def session_info(router: Any, session_id: Any) -> Optional[Dict[str, Any]]:
    """What ``wamp.session.get`` answers of a joined session (``authid``, ``authrole``,
    ``authextra``), read from the router's own session map (:func:`session_details`) instead
    of a meta API call; ``None`` if the session is not (or no longer) there, or the shape
    differs.

    :rtype: dict or None
    """
    try:
        details = session_details(router._session_id_to_session[session_id])
    except (AttributeError, KeyError, TypeError):
        return None
    info = {"authid": details["authid"], "authrole": details["authrole"], "authextra": details["authextra"]}
    if not isinstance(info["authid"], str) or not isinstance(info["authextra"], (dict, type(None))):
        return None
    return info


def events_sent(router: Any) -> Optional[int]:
    """EVENT messages the router has sent (to any session) since it started.

    :rtype: int or None
    """
    try:
        return int(router.stats()["messages"]["sent"].get("event", 0))
    except (AttributeError, KeyError, TypeError):
        return None


def link_states(router: Any) -> Dict[str, bool]:
    """The realm's own router links (those this node connects to its peers): link id to
    whether the link's session on the peer is joined.

    :rtype: dict
    """
    try:
        manager = router._realm.rlink_manager
        return {str(link_id): bool(manager[link_id].connected) for link_id in manager.keys()}
    except (AttributeError, KeyError, TypeError):
        return {}


def _web_transports(router: Any) -> List[Any]:
    try:
        transports = router._realm.controller.transports.values()
    except AttributeError:
        return []
    return [t for t in transports if getattr(t, "_config", {}).get("type") == "web"]


def web_address(router: Any) -> Optional[Tuple[str, int]]:
    """The (host, port) of the worker's web transport once it listens and every path it is
    configured with is in place; ``None`` before.

    :rtype: tuple or None
    """
    for transport in _web_transports(router):
        port, root = getattr(transport, "port", None), getattr(transport, "root", None)
        if port is None or root is None:
            continue
        paths = [p for p in transport._config.get("paths", {}) if p != "/"]
        if all(p in root for p in paths):
            try:
                address = port.getHost()
            except (AttributeError, OSError):
                return None  # the port stopped listening (the node is stopping)
            return getattr(address, "host", ""), int(getattr(address, "port", 0))
    return None


def stop_listening(router: Any) -> defer.Deferred:
    """Stop taking new connections on the worker's web transports (open ones stay): a balancer
    then sends new clients to the other nodes.

    :rtype: Deferred
    """
    stops = []
    for transport in _web_transports(router):
        port = getattr(transport, "port", None)
        if port is not None:
            stops.append(defer.maybeDeferred(port.stopListening))
    return defer.DeferredList(stops, consumeErrors=True)
