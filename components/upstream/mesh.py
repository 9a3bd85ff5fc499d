"""The full mesh's receiving side: a forwarded event is not sent on to the other nodes'
links, which would only drop it, and its republish is not acknowledged (two patches:
``mesh.one_hop``, ``mesh.republish``).

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

Upstream: one hop only is crossbario/crossbar#1918 (the change that would have forwarded
further, #2095, was closed); large meshes are discussed in crossbario/crossbar discussion #2094.
"""

from typing import Any, List

import txaio
from autobahn.wamp.types import PublishOptions
from crossbar.worker.rlink import RLinkLocalSession

from components.core.names import RLINK_ROLE
from components.upstream.registry import Patch, Wiring, register, replace

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

#: the patches of this area
PATCHES = (ONE_HOP, REPUBLISH)

__all__ = ["ONE_HOP", "PATCHES", "REPUBLISH", "exclude_links"]
