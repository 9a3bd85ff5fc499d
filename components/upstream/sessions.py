"""Cutting off a client session that does not answer its GOODBYE (one patch, a read of
Crossbar's internals that no API offers).

deptcast ends a session whose token expired or whose user was revoked with the meta procedure
``wamp.session.kill``, which sends the client a GOODBYE (:mod:`components.wamp.sessionlife`).
A client that never answers it stays attached to the router, and the router keeps its
subscriptions: a revoked client that ignores the GOODBYE would go on hearing its department
until the WebSocket ping notices (it never does for a client that answers pings). After a
grace period :func:`cut_off` aborts the session's connection.

- ``sessions.cut_off``: :func:`cut_off` finds the router-side session in the router's session
  map and drops its connection (``WebSocketProtocol.dropConnection(abort=True)``; the
  transport's ``abort()`` for another kind). Not applied: nothing is cut off (the session ends
  when its client answers the GOODBYE or its connection's ping times out).
"""

from typing import Any

from components.upstream.registry import Patch, Wiring, is_applied, register


def cut_off(router: Any, session_id: Any) -> bool:
    """Abort the connection of the router's session ``session_id``; answer whether there was
    one to abort (``False`` too while the patch is not applied, or if the shape differs).

    :rtype: bool
    """
    if not is_applied(CUT_OFF.name):
        return False
    try:
        transport = router._session_id_to_session[session_id]._transport
    except (AttributeError, KeyError, TypeError):
        return False
    if transport is None:
        return False
    drop = getattr(transport, "dropConnection", None)
    try:
        if drop is not None:
            drop(abort=True)
        else:
            transport.abort()
    except Exception:
        return False
    return True


def _read(wiring: Wiring) -> None:
    """A read has nothing to replace: applied, :func:`cut_off` acts."""


CUT_OFF = register(Patch(
    name="sessions.cut_off",
    replaces=("crossbar.router.service.RouterServiceAgent.session_kill",),
    checked={
        # the router's session map
        "crossbar.router.router.Router.attach":
            "efbbab4706e175a81ba65bb0cdba9bb13a4a5905c6bd4a825915f3d7a9e5c158",
        "crossbar.router.router.Router.detach":
            "5326cbfc6c52a2980c34195c80916e7b9ea6d2d5d116ea6d754473f309f45bf0",
        # where a router session keeps its transport, and the GOODBYE it sends (wamp.session.kill)
        "crossbar.router.session.RouterSession.onOpen":
            "5540733196a2d29d43746ad45e9a068f2136bddb6f439eb3610896fcd7094498",
        "crossbar.router.session.RouterSession.leave":
            "4c67cc2a4de5c05f0d35e7f27b912d2eeb1833ce67ba707eb1be5d39979e222e",
        "crossbar.router.service.RouterServiceAgent.session_kill":
            "197d921ccdd6ad6b52b2efb886edb81bb686aee62160a3e1e80ba566890eb5e0",
        "autobahn.websocket.protocol.WebSocketProtocol.dropConnection":
            "149c74c9a251a7b1f50ac0d5f2fb83ea853e98acb606906b212aac440a5658e8",
    },
    why="a session whose token expired or whose user was revoked gets a GOODBYE (wamp.session.kill); a client "
        "that never answers it stays attached and subscribed. No meta procedure aborts a session's connection",
    remove_when="Crossbar's wamp.session.kill closes the connection of a session that does not answer its "
                "GOODBYE in time (or a meta procedure aborts a session's transport)",
    apply=_read,
))

#: the patch of this area
PATCHES = (CUT_OFF,)

__all__ = ["PATCHES", "cut_off"]
