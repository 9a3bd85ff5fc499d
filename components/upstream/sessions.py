"""Cutting off a client session that does not answer its GOODBYE, meta events published only
where someone listens, and heard in-process by the node's own components (three patches).

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
- ``sessions.meta_local``: the node's own components follow the session and subscription meta
  events (presence, session lives, receipts, the census of ``/health``), and so do the local
  legs of the router links (``mesh.own_topics``: every client's subscriptions): through the
  broker, each event is a PUBLISH, its authorization and match, and an EVENT per follower,
  every client's join and leave four or five of them on one node and its three subscriptions
  four more in a cluster. With this patch a session that follows a meta topic with
  :func:`follow` is called in-process by the service session's publish, with the event's
  arguments (and left out where the publish's options exclude it, as the broker would), before
  the broker would have delivered it; the event then goes through the broker only if a WAMP
  subscription (a management client) matches it (``sessions.meta_heard``). Not applied:
  :func:`follow` answers ``False`` and the session subscribes as before.
"""

import functools
from typing import Any, Callable, Dict, List, Tuple

from crossbar.router.service import RouterServiceAgent
from twisted.internet import defer
from twisted.python.failure import Failure

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


#: the meta topics a component may follow in-process (:func:`follow`)
LOCAL_TOPICS = frozenset((
    "wamp.session.on_join", "wamp.session.on_leave",
    "wamp.subscription.on_create", "wamp.subscription.on_subscribe",
    "wamp.subscription.on_unsubscribe", "wamp.subscription.on_delete",
))

#: router -> meta topic -> [(component session, handler)], in the order they followed
_followers: Dict[Any, Dict[str, List[Tuple[Any, Callable[..., Any]]]]] = {}


def follow(session: Any, handler: Callable[..., Any], topic: str) -> bool:
    """Have ``handler`` called in-process with the arguments of every meta event on ``topic``
    that the realm's service session publishes, for as long as the component ``session`` (a
    router component) stays attached; answer whether it is (``False``: the patch is not applied,
    the topic is not one of :data:`LOCAL_TOPICS` or the session is not in-process, and the
    caller subscribes as usual).

    :rtype: bool
    """
    if topic not in LOCAL_TOPICS or not is_applied(META_LOCAL.name):
        return False
    router = getattr(getattr(session, "_transport", None), "_router", None)
    if router is None:
        return False
    _followers.setdefault(router, {}).setdefault(topic, []).append((session, handler))
    return True


def _excluded(session: Any, options: Any) -> bool:
    """Whether the publish ``options`` keep ``session`` from an event, as the broker would
    (``exclude``, ``exclude_authid``, ``exclude_authrole``, and the ``eligible`` lists)."""
    if options is None:
        return False
    for name, value in (("exclude", session._session_id), ("exclude_authid", session._authid),
                        ("exclude_authrole", session._authrole)):
        listed = getattr(options, name, None)
        if listed and value in listed:
            return True
    for name, value in (("eligible", session._session_id), ("eligible_authid", session._authid),
                        ("eligible_authrole", session._authrole)):
        listed = getattr(options, name, None)
        if listed is not None and value not in listed:
            return True
    return False


def _deliver(followers: List[Tuple[Any, Callable[..., Any]]], args: Tuple[Any, ...],
             kwargs: Dict[str, Any]) -> None:
    options = kwargs.pop("options", None)
    for entry in list(followers):
        session, handler = entry
        if not session.is_attached():
            followers.remove(entry)  # the component left
            continue
        if _excluded(session, options):
            continue
        try:
            answer = handler(*args, **kwargs)
        except Exception:
            session.onUserError(Failure(), "While handling a meta event in-process")
            continue
        if isinstance(answer, defer.Deferred):
            answer.addErrback(session.onUserError, "While handling a meta event in-process")


def meta_publish(upstream: Any) -> Any:
    """``RouterServiceAgent.publish`` that calls the in-process followers of a meta event
    (:func:`follow`) and leaves out the events nobody else would receive."""
    @functools.wraps(upstream)
    def publish(self: Any, topic: Any, *args: Any, **kwargs: Any) -> Any:
        options = kwargs.get("options")
        if _followers:
            followers = _followers.get(getattr(self, "_router", None), {}).get(topic)
            if followers:
                _deliver(followers, args, dict(kwargs))
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

def _local(wiring: Wiring) -> None:
    """Nothing to replace (``sessions.meta_heard``'s publish calls the followers): applied,
    :func:`follow` takes components."""


def _forget_followers() -> None:
    _followers.clear()


META_LOCAL = register(Patch(
    name="sessions.meta_local",
    replaces=("crossbar.router.broker.Broker.processPublish",),
    checked={
        "crossbar.router.service.RouterServiceAgent.publish":
            "abc98952a5075d6eb919972ef10500a973cb4f850d7b8c23d89d5de6388a6f69",
        # what an in-process subscriber of a meta event gets: its handler called with the event's
        # arguments (the broker's EVENT to a RouterApplicationSession, handled by ApplicationSession)
        "crossbar.router.broker.Broker.processPublish":
            "1dd9ade51c829929b1351654e681c8f45e89ed31deb642c9679e378ecdaa0b81",
        "crossbar.router.session.RouterApplicationSession.send":
            "214852b3faa1b56d28c7debb3c30cb41811579693870f9a28bb9918dd59ede19",
        # where the session meta events are published (on_join after the session is attached,
        # on_leave after it is detached)
        "crossbar.router.session.RouterSession.onJoin":
            "a479cdf12d023ecb4042468012ee64a2e5aecbe8b4231775ba95781e82d436f8",
        "crossbar.router.session.RouterSession.onLeave":
            "c2235fc80708a942f0fb3ec129c32324118cd369507259d42db4a8ce5268379e",
    },
    why="the node's components follow the session and subscription meta events through the broker: for every "
        "client that joins and leaves, about ten PUBLISHes, their authorization and match, and an EVENT per "
        "component, about a tenth of the router worker's CPU in a storm of 2,000 connections",
    remove_when="Crossbar lets in-process components hear the router's meta events without the broker (or the "
                "broker's cost per event no longer shows in a storm's profile)",
    apply=_local,
    undo=_forget_followers,
    requires=("sessions.meta_heard",),
))

#: the patches of this area
PATCHES = (CUT_OFF, META_HEARD, META_LOCAL)

__all__ = ["LOCAL_TOPICS", "META_HEARD", "META_LOCAL", "PATCHES", "cut_off", "follow", "heard", "meta_publish",
           "unheard"]
