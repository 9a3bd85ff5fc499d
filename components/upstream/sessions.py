"""Cutting off a client session that does not answer its GOODBYE, and meta events published
only where someone listens (two patches).

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
- ``sessions.meta_heard``: the realm's service session publishes a meta event
  (``wamp.subscription.on_create`` / ``on_subscribe`` for every client SUBSCRIBE,
  ``wamp.session.on_join`` / ``on_leave`` ...) only when the broker holds a subscription that
  matches its topic. Upstream builds a PUBLISH, sends it through the router and the broker,
  authorizes it and matches it for every one of them, and the broker then drops it when nobody
  listens: on a node without peers nobody follows the subscription events, four of them for
  each client that subscribes its three topics. Not applied: every meta event goes through the
  broker.
"""

import functools
from typing import Any

from crossbar.router.service import RouterServiceAgent
from twisted.internet import defer

from components.upstream.registry import Patch, Wiring, is_applied, register, replace


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

def unheard(agent: Any, topic: str) -> bool:
    """Whether a meta event on ``topic`` that the service session ``agent`` publishes would
    reach nobody: the agent publishes on its own realm only (no management session bridged),
    the router is not traced, the broker stores no events, and no subscription matches the
    topic. ``False`` when in doubt (another shape).

    :rtype: bool
    """
    try:
        exposed = agent._expose_on_sessions
        router = agent._router
        broker = router._broker
        return (len(exposed) == 1 and exposed[0][0] is agent and not exposed[0][1] and not router.is_traced
                and broker._event_store is None and not broker._subscription_map.match_observations(topic))
    except (AttributeError, IndexError, TypeError):
        return False


def heard(router: Any, topic: str) -> bool:
    """Whether an event on ``topic`` would reach a subscription of ``router``'s broker (a
    component's own events, such as presence changes, need not be published otherwise);
    ``True`` when in doubt (no router, the patch not applied, another shape).

    :rtype: bool
    """
    if router is None or not is_applied(META_HEARD.name):
        return True
    try:
        return bool(router._broker._subscription_map.match_observations(topic))
    except (AttributeError, TypeError):
        return True


def meta_publish(upstream: Any) -> Any:
    """``RouterServiceAgent.publish`` that leaves out the events nobody would receive."""
    @functools.wraps(upstream)
    def publish(self: Any, topic: Any, *args: Any, **kwargs: Any) -> Any:
        options = kwargs.get("options")
        if isinstance(topic, str) and not getattr(options, "retain", None) and unheard(self, topic):
            # what upstream answers once the broker dropped it: nothing, or an acknowledgement
            return defer.succeed(None) if getattr(options, "acknowledge", None) else None
        return upstream(self, topic, *args, **kwargs)
    return publish


def _apply_meta(wiring: Wiring) -> None:
    replace("crossbar.router.service.RouterServiceAgent.publish", RouterServiceAgent, "publish",
            meta_publish(RouterServiceAgent.publish))


META_HEARD = register(Patch(
    name="sessions.meta_heard",
    replaces=("crossbar.router.service.RouterServiceAgent.publish",),
    checked={
        "crossbar.router.service.RouterServiceAgent.publish":
            "abc98952a5075d6eb919972ef10500a973cb4f850d7b8c23d89d5de6388a6f69",
        # the broker drops an event without subscribers (neither acknowledged, retained nor stored)
        "crossbar.router.broker.Broker.processPublish":
            "1dd9ade51c829929b1351654e681c8f45e89ed31deb642c9679e378ecdaa0b81",
        # where the subscription meta events are published, for each SUBSCRIBE
        "crossbar.router.broker.Broker.processSubscribe":
            "9f5499a99f1210edee779f98de05ca41f196f3d0168b74600a087de85eb33f18",
        "crossbar.router.observation.UriObservationMap.match_observations":
            "1b64dfe88d9b69d7ac1033481e945f01d7b2b42fe918a1e53eca6f857d3bd567",
    },
    why="the router's service session publishes each meta event through the whole broker (a PUBLISH, its "
        "authorization, the match) although the broker then drops it when nobody subscribes: a node without peers "
        "publishes four subscription events nobody follows for every client that subscribes its three topics",
    remove_when="Crossbar publishes meta events only where a subscription matches (or lets a realm turn off the "
                "ones it does not use)",
    apply=_apply_meta,
))

#: the patches of this area
PATCHES = (CUT_OFF, META_HEARD)

__all__ = ["META_HEARD", "PATCHES", "cut_off", "heard", "meta_publish", "unheard"]
