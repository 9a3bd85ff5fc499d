"""The full mesh's links: a forwarded event is not sent on to the other nodes' links, which
would only drop it, and its republish is not acknowledged; a link pulls only the topics its
own node's sessions subscribe (three patches: ``mesh.one_hop``, ``mesh.republish``,
``mesh.own_topics``).

**The echo.** In deptcast's mesh every node owns a link to every peer (Crossbar's rlink, see
:mod:`components.upstream.rlinks`): node B's link to A subscribes, on A, each topic B's own
clients subscribe, and republishes on B what A sends it. That republish is an ordinary
PUBLISH on B's router, by the link's *local leg*, carrying ``forward_for``. B's broker hands it
to every subscriber of the topic on B, and those include the *remote legs* of the other
nodes' links to B (C's link to B, D's link to B, ...: they subscribed the same topic on B to
pull B's own events). So each forwarded event is serialized and written N-2 times more on B,
read and parsed N-2 times more on the other nodes, and there dropped by the link's one-hop
rule (``on_event`` returns for an event that carries ``forward_for``; an event without it,
should the publisher not be disclosed, would fail the handler's ``assert`` instead). The cost
of a forwarded notice on a receiving node grows with N although each node needs one copy.

Crossbar's link publishes with ``exclude_authrole`` taken from its local leg's config, but
Crossbar never puts one there (``RLinkManager.start_link`` fills only the remote leg's
``exclude_authid``), and the node configuration cannot name one.

**The cut.** The local leg of every link in this process joins with ``exclude_authrole`` set
to the role of peers' link sessions (:data:`~components.core.names.RLINK_ROLE`): the broker
leaves the other nodes' remote legs out of a forwarded event's receivers (a set difference it
already makes per publish), so a forwarded event goes to this node's own subscribers only.
Nothing a peer delivers changes: it dropped every one of those copies. Events published on
this node by anyone else (clients, the node's own components) still reach every link.

**The acknowledgement.** The link republishes each event with ``acknowledge=True`` and waits
for the broker's PUBLISHED: one more message, request entry, Deferred and callback chain per
forwarded event on the receiving node, for an answer the link only logs when it is an error.
The local leg is in-process and of the ``trusted`` role, so its publish cannot be refused for
authorization; ``mesh.republish`` sends a forwarded event's republish unacknowledged (the
broker processes it the same, in the same order).

**What a link pulls** (``mesh.own_topics``). A link's local leg follows the subscriptions
made on its node (the meta events ``wamp.subscription.on_create`` / ``on_delete``) and
subscribes each one on the peer, for as long as it exists here. Upstream counts every
subscriber, the remote legs of the *other* nodes' links included, so node A's link pulls from
B every topic C's link subscribed on A, and two links keep each other's subscriptions alive:
B's link subscribed ``t`` on A because a client on B wanted it; A's link sees a subscription
on A and subscribes ``t`` on B; when the client on B leaves, B's subscription still has A's
link as subscriber, and A's still has B's. A subscription made and dropped at once (the
readiness probe does this) starts a ping-pong instead: each link's subscribe on the other
node arrives after the subscription it followed is gone there, creates it anew, and the other
link follows that one (about 100 ``subscription already gone`` / ``has no 'sub'`` lines in 9 s,
21-59 % of a core per node while it lasted, once for over a minute).

Every local leg in this process follows, instead of the creation and deletion of a
subscription, whether it has a subscriber of this node's own (any session but the peers' link
sessions, role :data:`~components.core.names.RLINK_ROLE`): it is forwarded from the first own
subscriber on (``on_create`` or ``on_subscribe``) and dropped on the peer when the last own
subscriber leaves (``on_unsubscribe`` or ``on_delete``), whoever else still holds it. The
answer comes from the broker's subscription map at the moment a meta event is handled (the
local leg runs inside the router), so events handled late cannot undo a newer state; the
subscriptions listed when the link (re)joins are filtered the same way, and once the link is
ready every tracked subscription is checked again. The forwarding itself (one subscription
per topic on the peer, the republish) is upstream's.

Upstream: one hop only is crossbario/crossbar#1918 (the change that would have forwarded
further, #2095, was closed); link duplicates are #1916; large meshes are discussed in
crossbario/crossbar discussion #2094.
"""

from typing import Any, Callable, Dict, List, Optional

import txaio
from autobahn.wamp.types import PublishOptions
from crossbar.worker.rlink import RLinkLocalSession
from twisted.internet import defer

from components.core.names import RLINK_ROLE
from components.upstream.registry import Patch, Wiring, register, replace
from components.upstream import sessions

txaio.use_twisted()  # a Twisted module: its txaio loggers are Twisted's


def exclude_links(extra: Any, role: str = RLINK_ROLE) -> List[str]:
    """Add ``role`` to the ``exclude_authrole`` of a link's local leg ``extra`` (its
    ``config.extra``, a dict), keeping any already there. Answers the list now there.

    :rtype: list
    """
    current = extra.get("exclude_authrole") or []
    roles = [current] if isinstance(current, str) else list(current)
    if role not in roles:
        roles.append(role)
    extra["exclude_authrole"] = roles
    return roles


def _on_join(upstream: Any) -> Any:
    def onJoin(self, details):
        extra = getattr(self.config, "extra", None)
        if isinstance(extra, dict):
            exclude_links(extra)
        return upstream(self, details)
    return onJoin


def _publish(upstream: Any) -> Any:
    def publish(self, topic, *args, **kwargs):
        options = kwargs.get("options")
        if isinstance(options, PublishOptions) and options.acknowledge and options.forward_for:
            options.acknowledge = False  # a forwarded event's republish (built per event)
        return upstream(self, topic, *args, **kwargs)
    return publish


def _apply_republish(wiring: Wiring) -> None:
    replace("autobahn.wamp.protocol.ApplicationSession.publish", RLinkLocalSession, "publish",
            _publish(RLinkLocalSession.publish))


def _apply(wiring: Wiring) -> None:
    replace("crossbar.worker.rlink.RLinkLocalSession.onJoin", RLinkLocalSession, "onJoin",
            _on_join(RLinkLocalSession.__dict__["onJoin"]))


ONE_HOP = register(Patch(
    name="mesh.one_hop",
    replaces=("crossbar.worker.rlink.RLinkLocalSession.onJoin",),
    checked={
        # reads exclude_authrole from its config.extra into _exclude_authrole
        "crossbar.worker.rlink.RLinkLocalSession.onJoin":
            "00e903464db8dc53ead6f4b71b5ff75c6e32641f73357ac5a1428a4cfbe12ed1",
        # the local leg's extra never holds exclude_authrole
        "crossbar.worker.rlink.RLinkManager.start_link":
            "17267a0a330d99be8adc3cb605357d654b056edccf1db8bfb8beb276baedfd15",
        # on_event: skips what carries forward_for; republishes with exclude_authrole=self._exclude_authrole
        "crossbar.worker.rlink.BridgeSession._setup_event_forwarding":
            "2bfcdede1b5c0fc699275e1bc37feda48595c023a3c9ce8df688c29254827b2c",
        # the broker drops the sessions of every excluded role from a publication's receivers
        "crossbar.router.broker.Broker._filter_publish_receivers":
            "6d30b823df5002b70800b76648de69b6023f2331d3b93f4a6a8b301c52b61481",
    },
    why="a forwarded event was also sent to the other nodes' link sessions on the receiving node, which drop "
        "it (one hop only): N-2 wasted copies written and N-2 read per node per notice, so a receiving node's CPU "
        "per notice grew with N (0.65 ms at 2 nodes, 1.23 ms at 6); with this patch the links leave them out",
    upstream_issue="crossbario/crossbar#1918",
    remove_when="Crossbar's router link excludes the other links from what it republishes (or lets the link "
                "configuration set the local leg's exclude_authrole)",
    apply=_apply,
))

REPUBLISH = register(Patch(
    name="mesh.republish",
    replaces=("autobahn.wamp.protocol.ApplicationSession.publish",),
    checked={
        # returns None for an unacknowledged publish (on_event yields it: fine in inlineCallbacks)
        "autobahn.wamp.protocol.ApplicationSession.publish":
            "aa4a71aaf017ccaf5d10ae2fab893864f76df6c55739d5b36a1ff19c6d633c9f",
        # on_event: a fresh PublishOptions(acknowledge=True, forward_for=...) per event; errors only logged
        "crossbar.worker.rlink.BridgeSession._setup_event_forwarding":
            "2bfcdede1b5c0fc699275e1bc37feda48595c023a3c9ce8df688c29254827b2c",
        # the local leg joins in-process as 'trusted'
        "crossbar.worker.rlink.RLinkManager.start_link":
            "17267a0a330d99be8adc3cb605357d654b056edccf1db8bfb8beb276baedfd15",
    },
    why="the link waits for a PUBLISHED for every event it republishes on the receiving node (one more message, "
        "request and Deferred chain per forwarded notice) although its in-process trusted session cannot be refused "
        "and the answer is only logged",
    remove_when="Crossbar's router link republishes without acknowledgement, or its per-event cost no longer shows "
                "in a receiving node's profile (bench/mesh.py --profile)",
    apply=_apply_republish,
))


# -- what a link pulls ---------------------------------------------------------------------

#: the meta events a local leg follows (the first two subscribed by upstream)
ON_CREATE = "wamp.subscription.on_create"
ON_DELETE = "wamp.subscription.on_delete"
ON_SUBSCRIBE = "wamp.subscription.on_subscribe"
ON_UNSUBSCRIBE = "wamp.subscription.on_unsubscribe"


def subscription_of(router: Any, sub_id: Any) -> Any:
    """The broker's subscription ``sub_id`` on ``router`` (a Crossbar ``Router``), or ``None``."""
    try:
        return router._broker._subscription_map.get_observation_by_id(sub_id)
    except AttributeError:
        return None


def has_own_subscriber(subscription: Any, role: str = RLINK_ROLE) -> bool:
    """Whether a broker subscription has a subscriber that is not a peer's link session
    (``role``): what makes a link pull its topic. ``False`` for ``None`` (gone).

    :rtype: bool
    """
    if subscription is None or subscription.uri.startswith("wamp."):
        return False
    return any(getattr(session, "_authrole", None) != role for session in subscription.observers)


def details_of(subscription: Any) -> Dict[str, Any]:
    """The details of a subscription as the meta API gives them (``wamp.subscription.get``)."""
    return {"id": subscription.id, "created": subscription.created, "uri": subscription.uri,
            "match": subscription.match}


class OwnTopics:
    """What one link's local leg forwards: the subscriptions of its node that have an own
    subscriber. Drives upstream's handlers (``create(session_id, details)``,
    ``delete(session_id, sub_id)``), captured when the leg subscribes them.

    :param leg: the local leg (an ``RLinkLocalSession``: its ``_subs`` maps what it forwards)
    """

    log = txaio.make_logger()

    def __init__(self, leg: Any) -> None:
        self.leg = leg
        self.create: Optional[Callable[..., Any]] = None
        self.delete: Optional[Callable[..., Any]] = None
        #: subscriptions left alone because only peers' links hold them (tests, the log)
        self.ignored = 0

    def router(self) -> Any:
        # an in-process session's transport is Crossbar's RouterApplicationSession
        return getattr(getattr(self.leg, "_transport", None), "_router", None)

    def wanted(self, sub_id: Any) -> Optional[Dict[str, Any]]:
        """The details of ``sub_id`` if the link must forward it now, else ``None``."""
        subscription = subscription_of(self.router(), sub_id)
        return details_of(subscription) if has_own_subscriber(subscription) else None

    def reconcile(self, session_id: Any, sub_id: Any) -> Any:
        """Forward ``sub_id`` if it has an own subscriber and is not forwarded, stop forwarding
        it if it has none and is (an attempt under way counts as forwarded)."""
        entry = getattr(self.leg, "_subs", {}).get(sub_id)
        held = entry is not None
        forwarded = entry.get("sub") if isinstance(entry, dict) else None
        if forwarded is not None and not getattr(forwarded, "active", True):
            # upstream's delete is under way (its unsubscribe made the remote subscription
            # inactive, and it forgets the entry once that is answered): a second delete for
            # the same subscription (on_unsubscribe, then on_delete) would raise "subscription
            # no longer active" in upstream's handler
            return None
        subscription = subscription_of(self.router(), sub_id)
        wanted = has_own_subscriber(subscription)
        if wanted and not held and self.create is not None:
            return self.create(session_id, details_of(subscription))
        if not wanted and held and self.delete is not None:
            return self.delete(session_id, sub_id)
        if not wanted and not held and subscription is not None:
            self.ignored += 1
        return None

    def sweep(self) -> Any:
        """Check every forwarded subscription again (once the link is ready)."""
        d = defer.gatherResults([defer.maybeDeferred(self.reconcile, None, sub_id)
                                 for sub_id in list(getattr(self.leg, "_subs", {}))], consumeErrors=True)
        return d.addErrback(lambda failure: self.log.warn(
            "deptcast links: checking what a link pulls failed: {error}", error=failure.getErrorMessage()))

    def on_create(self, session_id: Any, sub_details: Any, *args: Any, **kwargs: Any) -> Any:
        # kwargs: the event's details (SubscribeOptions(details_arg="details"))
        return self.reconcile(session_id, sub_details.get("id") if isinstance(sub_details, dict) else None)

    def on_change(self, session_id: Any, sub_id: Any, *args: Any, **kwargs: Any) -> Any:
        return self.reconcile(session_id, sub_id)

    def filter_listed(self, listed: Any) -> Any:
        """``wamp.subscription.list``'s answer with only the subscriptions to forward."""
        if isinstance(listed, dict) and isinstance(listed.get("exact"), list):
            listed = dict(listed, exact=[sub_id for sub_id in listed["exact"] if self.wanted(sub_id) is not None])
        return listed


def own_topics(leg: Any) -> OwnTopics:
    """The :class:`OwnTopics` of a local leg (made on first use)."""
    topics = getattr(leg, "_deptcast_own_topics", None)
    if topics is None:
        topics = leg._deptcast_own_topics = OwnTopics(leg)
    return topics


def _watch_ready(leg: Any, topics: OwnTopics) -> None:
    remote = (getattr(leg.config, "extra", None) or {}).get("other")
    if remote is None or getattr(remote, "_deptcast_own_topics_watched", False):
        return
    remote._deptcast_own_topics_watched = True  # one remote leg object per link, reused by reconnects
    remote.on("ready", lambda *a, **kw: topics.sweep())


def _subscribe_own(upstream: Any) -> Any:
    def meta(leg: Any, handler: Any, topic: str, options: Any, check_types: Any) -> Any:
        # heard in-process where sessions.meta_local is applied (no PUBLISH through the broker
        # for every client's subscription), else subscribed
        if sessions.follow(leg, handler, topic):
            return defer.succeed(None)
        return upstream(leg, handler, topic=topic, options=options, check_types=check_types)

    def subscribe(self, handler, topic=None, options=None, check_types=None):
        if topic not in (ON_CREATE, ON_DELETE):
            return upstream(self, handler, topic=topic, options=options, check_types=check_types)
        topics = own_topics(self)
        if topic == ON_CREATE:
            topics.create = handler
            _watch_ready(self, topics)
            return meta(self, topics.on_create, topic, options, check_types)
        topics.delete = handler
        return defer.gatherResults([
            meta(self, topics.on_change, topic, options, check_types),
            meta(self, topics.on_change, ON_SUBSCRIBE, options, check_types),
            meta(self, topics.on_change, ON_UNSUBSCRIBE, options, check_types),
        ], consumeErrors=True).addCallback(lambda subscriptions: subscriptions[0])
    return subscribe


def _call_own(upstream: Any) -> Any:
    def call(self, procedure, *args, **kwargs):
        d = upstream(self, procedure, *args, **kwargs)
        if procedure == "wamp.subscription.list" and not args:
            d.addCallback(own_topics(self).filter_listed)
        return d
    return call


def _apply_own_topics(wiring: Wiring) -> None:
    replace("crossbar.worker.rlink.RLinkLocalSession.subscribe", RLinkLocalSession, "subscribe",
            _subscribe_own(RLinkLocalSession.subscribe))
    replace("crossbar.worker.rlink.RLinkLocalSession.call", RLinkLocalSession, "call",
            _call_own(RLinkLocalSession.call))


OWN_TOPICS = register(Patch(
    name="mesh.own_topics",
    replaces=("crossbar.worker.rlink.BridgeSession._setup_event_forwarding",
              "autobahn.wamp.protocol.ApplicationSession.subscribe",
              "autobahn.wamp.protocol.ApplicationSession.call"),
    checked={
        # the local leg subscribes its on_create / on_delete handlers with self.subscribe, lists
        # what exists with self.call('wamp.subscription.list'), tracks what it forwards in _subs
        # (an entry from before the remote subscribe returns), drops it on the peer on delete
        "crossbar.worker.rlink.BridgeSession._setup_event_forwarding":
            "2bfcdede1b5c0fc699275e1bc37feda48595c023a3c9ce8df688c29254827b2c",
        # only the local leg forwards events (forward_local_events), in-process on the router
        "crossbar.worker.rlink.RLinkLocalSession.onJoin":
            "00e903464db8dc53ead6f4b71b5ff75c6e32641f73357ac5a1428a4cfbe12ed1",
        "crossbar.worker.rlink.RLinkManager.start_link":
            "17267a0a330d99be8adc3cb605357d654b056edccf1db8bfb8beb276baedfd15",
        # an in-process session's _transport is a RouterApplicationSession holding the router
        "crossbar.router.session.RouterApplicationSession.__init__":
            "6497ab4250e3024288564b9d03a37b3dddbc8f61742cc7c29529ed7ec2a50e72",
        # the meta events: on_create for the first subscriber, on_subscribe for each, on_unsubscribe
        # and on_delete when one / the last leaves (after callLater(0): handled late)
        "crossbar.router.broker.Broker.processSubscribe":
            "9f5499a99f1210edee779f98de05ca41f196f3d0168b74600a087de85eb33f18",
        "crossbar.router.broker.Broker._unsubscribe":
            "4df416194d963598d469586210544216094a1bc3626c8f2b3037c6121b7f93fd",
        "crossbar.router.broker.Broker.detach":
            "938a3f06ff9ccf4c23450f1d8a08a8d729a86c9574ced9a6e69fa50beefc0db7",
        # the subscription map the broker keeps, by id; a subscription's observers are router sessions
        "crossbar.router.observation.UriObservationMap.get_observation_by_id":
            "fcc81d98435216199f38e746a030553f161c7c3c6b619c75ff2bd1cab5e1fad0",
        "autobahn.wamp.protocol.ApplicationSession.subscribe":
            "1c68ec6170698998aa1830583c31311dcbbaccc2685634f238398c04b523428e",
        "autobahn.wamp.protocol.ApplicationSession.call":
            "cbe0510e9354a083c1dfd5a11390dbb8fbe554b2ddfc15ac078d6d11b45eeeb3",
    },
    why="a link forwarded every subscription on its node, the ones made by the other nodes' links included: each "
        "node pulled every topic subscribed anywhere, two links kept each other's subscriptions alive after the "
        "last client left, and a subscription made and dropped at once made two links re-create it on each other "
        "(about 100 churn lines in 9 s, 21-59 % of a core per node, once for over a minute; a restarting node "
        "could miss its link gate); with this patch a link forwards only subscriptions with an own subscriber",
    upstream_issue="crossbario/crossbar#1916",
    remove_when="Crossbar's router link ignores subscriptions held only by other router links (for instance by "
                "subscribing with forward_for, or an exclude_authrole for subscriptions; discussion #2094)",
    apply=_apply_own_topics,
))

#: the patches of this area
PATCHES = (ONE_HOP, REPUBLISH, OWN_TOPICS)

__all__ = ["ONE_HOP", "OWN_TOPICS", "OwnTopics", "PATCHES", "REPUBLISH", "exclude_links", "has_own_subscriber",
           "own_topics"]
