"""What deptcast reads from, and does to, the Crossbar router worker its components run in
(five patches: four reads of Crossbar's internals that no API offers, and the worker's
garbage collector).

A router component's session is attached to its router in-process; through it this module
reaches the router's session map, its message counts, the realm's router links, and the
worker's web transport (its listening port and its paths). These are Crossbar's own objects:
each read is a patch, applied only while the Crossbar source it reads is the one checked.
While one is not applied, its functions answer as if the shape differed (``None`` /
nothing), and each function still checks what it touches:

- ``worker.session_info``: :func:`session_info`, a caller's ``wamp.session.get`` answer read
  from the router's session map (a dict lookup, where the call is a round trip through the
  dealer; a storm of new clients makes one each). Not applied: the caller asks the meta API;
- ``worker.stats``: :func:`events_sent` for ``/metrics``. Not applied: no such metric;
- ``worker.links``: :func:`link_states`, this node's own links for ``/health``. Not applied:
  ``/health`` sees no link of this node up;
- ``worker.web_transport``: :func:`web_address` (the ready line once every path is in place)
  and :func:`stop_listening` (the drain on SIGTERM). Not applied: no ready line, no drain.
- ``worker.gc``: Crossbar's worker process keeps Python's default collector settings. Every
  WAMP connection is a few hundred tracked objects (protocol, session, details, Deferreds)
  that live as long as the connection, so a storm of new connections makes the collector go
  through the whole heap again and again: with the defaults (a full collection after every 10
  second-generation ones, once the heap has grown by a quarter) a storm of 2,000 connections
  made six full collections of 150-200 ms each, more CPU than the garbage collector's young
  generations and about a fifth of the router worker's CPU in the storm. The patch moves what
  the worker holds once it has started (Crossbar, Twisted, the node's components: modules,
  classes, configuration) into the permanent generation (``gc.freeze()``), which no collection
  goes through again, and lets a full collection come only after 100 second-generation ones
  (:data:`GC_FULL_AFTER`; the quarter-of-the-heap rule still applies), so cyclic garbage is
  still collected by the young generations as before and the old one is gone through
  occasionally. Not applied: Python's defaults.
"""

import gc

from typing import Any, Dict, List, Optional, Tuple

from twisted.internet import defer

from components.upstream.registry import Patch, Wiring, is_applied, register

#: what the dynamic authorizer is told of a session: mirrored by :func:`session_details`
DYNAMIC_AUTHORIZER = {
    "crossbar.router.role.RouterRoleDynamicAuth.authorize":
        "964ce3d1ec38d60eea12e85b19bb131b0017b4e750f5e601db09d86d70818c8d",
}


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
    of a meta API call; ``None`` if the session is not (or no longer) there, the shape
    differs, or the patch is not applied.

    :rtype: dict or None
    """
    if not is_applied(SESSION_INFO.name):
        return None
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
    if not is_applied(STATS.name):
        return None
    try:
        return int(router.stats()["messages"]["sent"].get("event", 0))
    except (AttributeError, KeyError, TypeError):
        return None


def link_states(router: Any) -> Dict[str, bool]:
    """The realm's own router links (those this node connects to its peers): link id to
    whether the link's session on the peer is joined.

    :rtype: dict
    """
    if not is_applied(LINKS.name):
        return {}
    try:
        manager = router._realm.rlink_manager
        return {str(link_id): bool(manager[link_id].connected) for link_id in manager.keys()}
    except (AttributeError, KeyError, TypeError):
        return {}


def _web_transports(router: Any) -> List[Any]:
    if not is_applied(WEB_TRANSPORT.name):
        return []
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


def _read(wiring: Wiring) -> None:
    """A read has nothing to replace: applied, its functions answer."""


SESSION_INFO = register(Patch(
    name="worker.session_info",
    replaces=("crossbar.router.service.RouterServiceAgent.session_get",),
    checked={
        "crossbar.router.service.RouterServiceAgent.session_get":
            "d96b71c2e1c611c8f8fe95eb07a6d091ace51eeab3a1db05392e8b4a2c71f22f",
        # the router's session map
        "crossbar.router.router.Router.attach":
            "efbbab4706e175a81ba65bb0cdba9bb13a4a5905c6bd4a825915f3d7a9e5c158",
        "crossbar.router.router.Router.detach":
            "5326cbfc6c52a2980c34195c80916e7b9ea6d2d5d116ea6d754473f309f45bf0",
        **DYNAMIC_AUTHORIZER,
    },
    why="the department of a caller is in its authextra, which the router does not disclose with a call: asking "
        "wamp.session.get is a round trip through the dealer for every new client's first call (a storm of "
        "2,000 clients made 2,000)",
    remove_when="Crossbar discloses the caller's authextra with a call (or the department moves into the authid)",
    apply=_read,
))

STATS = register(Patch(
    name="worker.stats",
    replaces=("crossbar.router.router.Router.stats",),
    checked={"crossbar.router.router.Router.stats":
             "5b496661844c4e5a786effb48e6c39a01d82305839d8524f20f429b6785ac74c"},
    why="/metrics counts the EVENT messages the router sent; Crossbar keeps the count but offers no API for it "
        "to a router component",
    remove_when="Crossbar exposes the router's message statistics (a meta procedure or its own metrics)",
    apply=_read,
))

LINKS = register(Patch(
    name="worker.links",
    replaces=("crossbar.worker.types.RouterRealm.rlink_manager",),
    checked={
        "crossbar.worker.types.RouterRealm.__init__":
            "a6638e83b188c1ca0bbb014eb4e1e20e26ae46b3bba2813d9cd62503e7bd7735",
        "crossbar.worker.rlink.RLink.__init__":
            "95fc962f101d72b8a53c39cec7c8fb188a3076a5b114385facb0f4ee3a0ddb90",
        "crossbar.worker.rlink.RLinkManager.keys":
            "587f024145afc763d2322ab93829c22a401c6d10243679afa1c0915959568c8d",
        "crossbar.worker.rlink.RLinkManager.__getitem__":
            "552f2febf30370b8cc96401562b58849578edba620cb51a220629306d924affc",
        # where a link's 'connected' is set and cleared
        "crossbar.worker.rlink.RLinkRemoteSession.onJoin":
            "3e032f80853eee03dad8eed3fdfd9d5d6e137161f226c24b7f00faf74a2598c7",
        "crossbar.worker.rlink.RLinkRemoteSession.onLeave":
            "a64380ffa2495ce8c0795d7f2c570d61d5a121b9a9280d07429fdc96567a85fc",
    },
    why="/health says whether this node's own links to its peers are connected; no meta API tells a component "
        "(the realm's link manager knows)",
    remove_when="Crossbar's meta API lists a realm's router links and their state",
    apply=_read,
))

WEB_TRANSPORT = register(Patch(
    name="worker.web_transport",
    replaces=("crossbar.worker.router.RouterController.transports",),
    checked={
        "crossbar.worker.types.RouterRealm.__init__":
            "a6638e83b188c1ca0bbb014eb4e1e20e26ae46b3bba2813d9cd62503e7bd7735",
        "crossbar.worker.router.RouterController.start_router_transport":
            "12478663db5b4ec8e8727b4591804e0058a23c33bbbc46a9cbd3aceea7451f4f",
        "crossbar.worker.transport.RouterTransport.__init__":
            "f2dc7dbf79a86d8942cc8e47af6ea5e09216d752daf85e108e463c6ee5261401",
        "crossbar.worker.transport.RouterTransport.start":
            "eb0898f0db3f4a42f6d5d641b47a980f01475273802dbc2d75d5e31a014492ff",
        "crossbar.worker.transport.RouterTransport.root":
            "a7f64df47fd8b380da03c41bc687041403d8bd11fb20e684438ace5621c1dd48",
        "crossbar.worker.transport.RouterTransport.port":
            "ef50d5866ffd8dd16595bff6b4692f1108441f2ff8611596350665b9425345a7",
        "crossbar.webservice.base.RouterWebService.__contains__":
            "e13406835768ff80832c5d441d3330303be5dd672cb30363aac1cdc13a069967",
    },
    why="the node's ready line waits for the web transport to listen with every path in place, and the drain "
        "on SIGTERM stops it listening before the sessions are closed; a router component has no API for either",
    remove_when="Crossbar tells a router component when its transports listen, and lets it pause a transport",
    apply=_read,
))

#: second-generation collections before a full one (Python's default: 10)
GC_FULL_AFTER = 100
#: the thresholds before the patch, to put back
_gc_before: List[Tuple[int, int, int]] = []


def _tune_gc(wiring: Wiring) -> None:
    young, middle, _ = gc.get_threshold()
    _gc_before.append(gc.get_threshold())
    gc.freeze()
    gc.set_threshold(young, middle, GC_FULL_AFTER)


def _untune_gc() -> None:
    if _gc_before:
        gc.set_threshold(*_gc_before.pop())
        gc.unfreeze()


GC = register(Patch(
    name="worker.gc",
    replaces=("crossbar.worker.main._run_command_exec_worker",),
    checked={
        # the worker process starts with Python's collector settings and never changes them
        "crossbar.worker.main._run_command_exec_worker":
            "5a4d2fb28edb32fabf9792316d231a718ee92cb1dd4a35ddaee2c34dc8e788d3",
        # its only collection of its own: a full one when the management API asks
        "crossbar.common.process.NativeProcess.trigger_gc":
            "b18a45b50065de55e89b7214960d9f5ae1e9092c88dce73ad488fced96a75b2c",
    },
    why="with Python's default collector settings a storm of new WAMP connections makes the router worker go "
        "through its whole heap, Crossbar's and Twisted's modules included, several times: six full collections "
        "of 150-200 ms in a storm of 2,000 connections, about a fifth of the worker's CPU in it",
    remove_when="Crossbar's worker freezes its start-up heap and tunes its collector for many long-lived "
                "connections (or Python's collector no longer goes through the old generation this often)",
    apply=_tune_gc,
    undo=_untune_gc,
))

#: the five patches of this area
PATCHES = (SESSION_INFO, STATS, LINKS, WEB_TRANSPORT, GC)

__all__ = ["GC", "GC_FULL_AFTER", "PATCHES", "events_sent", "link_states", "router_of", "session_details",
           "session_info", "stop_listening", "web_address"]
