"""This node's router-to-router links, from inside the router worker: a repair for the
events they deliver twice after a drop, and the link state the node's other parts follow (one
patch: ``rlinks.repair``).

**The duplication.** A node pulls each peer's events over a link it owns (Crossbar's rlink):
a *local leg* session on this router and a *remote leg* session joined to the peer. For
each topic subscribed here, the local leg subscribes the remote leg on the peer, and its
handler republishes every event here. Crossbar hands the remote leg to autobahn's
``ApplicationRunner`` as one session *object*, which every reconnect reuses; autobahn keeps
a session's event handlers (``_subscriptions``: subscription id to handlers) across
connections and never clears them when the connection is lost. After a drop the link
joins again and the local leg subscribes every topic anew. If the peer's router kept the
subscription meanwhile (another session there is subscribed to the topic: another node's
link, the peer's own clients, or our old link session the peer has not noticed is gone),
the peer answers with the *same* subscription id, and autobahn appends the new handler
beside the old one: from then on each event from the peer is republished here twice, after
every further drop once more, for as long as the node runs. The peer's meta API sees
nothing wrong: one link session, subscribed once. (Measured on crossbar 26.10.1 with
autobahn 26.10.2: after one ``ss -K`` of a link's connection every handler list of the
remote leg held 2 handlers, all active: ``tests/cluster/test_linkdrop.py`` drops a link for real.)
Reported upstream as crossbario/crossbar#1916.

Nothing in the link's configuration avoids it, and nothing on the WAMP level can undo it:
killing the link session makes the link reconnect and append one handler more, and
removing its subscription on the peer (``wamp.subscription.remove_subscriber``) either
leaves the handlers in place or, as autobahn answers a revocation with a protocol error,
drops the connection as well.

**The repair**: every remote leg in this process

- forgets the handlers of its previous connection when it opens a new one (a WAMP
  session's subscriptions end with it; :func:`forget_previous_connection`);
- keeps one handler per subscription id when a subscribe returns
  (:func:`keep_newest_handler`): the link subscribes each topic once, so a second handler
  can only come from two overlapping runs of Crossbar's re-subscribe (its guard in
  ``on_subscription_create`` looks at ``sub`` only after the remote subscribe returned).

**The state** (:class:`LinkWatch`): a link is *down* from the moment its connection is
lost, and *up* again once it has joined the peer and subscribed there every topic this
node had (the remote leg's ``ready``: after the local leg's re-subscribe completed). The
legacy fan-out and the presence component follow it through the runtime's
:class:`~components.service.links.LinkState`.

It reaches into Crossbar and autobahn internals (``RLinkRemoteSession``, a session's
``_subscriptions``, the local leg's ``config.extra``), pinned by the patch's digests.
"""

from typing import Any, Dict, Optional, Protocol, Sequence

from autobahn.wamp.request import Subscription
from crossbar.worker.rlink import RLinkRemoteSession
import txaio

from components.upstream.registry import Patch, Wiring, register, replace

txaio.use_twisted()  # a Twisted module: its txaio loggers are Twisted's

#: the id ``deptcast cluster init`` gives a node's link to ``peer``: ``to-<peer>``
LINK_ID_PREFIX = "to-"


def peer_of(link_id: Optional[str], peers: Sequence[str]) -> Optional[str]:
    """The peer a link goes to, from its id (``to-<peer>``); ``None`` if it is not one of ``peers``.

    :rtype: str or None
    """
    if not isinstance(link_id, str) or not link_id.startswith(LINK_ID_PREFIX):
        return None
    peer = link_id[len(LINK_ID_PREFIX):]
    return peer if peer in peers else None


def forget_previous_connection(session: Any) -> int:
    """Deactivate and forget every event handler (and registration) ``session`` still holds
    from a connection that ended. Returns how many handlers it forgot.

    :param session: an autobahn ``ApplicationSession`` about to start a new connection
    :rtype: int
    """
    forgotten = 0
    # autobahn keeps both on the session object (ApplicationSession.__init__), nowhere else
    subscriptions = getattr(session, "_subscriptions", None)
    if isinstance(subscriptions, dict):
        for handlers in subscriptions.values():
            for handler in handlers:
                handler.active = False
                forgotten += 1
        subscriptions.clear()
    registrations = getattr(session, "_registrations", None)
    if isinstance(registrations, dict):
        for registration in registrations.values():
            registration.active = False
        registrations.clear()
    return forgotten


def keep_newest_handler(session: Any, subscription: Subscription) -> int:
    """Drop every handler on ``subscription``'s id but ``subscription`` itself (just made).
    Returns how many it dropped.

    :rtype: int
    """
    handlers = getattr(session, "_subscriptions", {}).get(subscription.id)
    if not handlers or subscription not in handlers or len(handlers) == 1:
        return 0
    others = [h for h in handlers if h is not subscription]
    for handler in others:
        handler.active = False
    handlers[:] = [subscription]
    return len(others)


def link_id_of(remote: Any) -> Optional[str]:
    """The link id of an rlink remote leg (kept in its local leg's ``config.extra``), or ``None``.

    :rtype: str or None
    """
    try:
        return remote.config.extra["other"].config.extra["rlink"]
    except (AttributeError, KeyError, TypeError):
        return None


class LinkStates(Protocol):
    """Where link states go (the runtime's :class:`~components.service.links.LinkState`)."""

    watching: bool

    def is_up(self, peer: str) -> Optional[bool]: ...

    def up(self, peer: str) -> None: ...

    def down(self, peer: str) -> None: ...


class LinkWatch:
    """Repairs this node's links' remote legs and reports their state.

    :param state: where the state goes (the runtime's ``LinkState``)
    :param peers: the peers' names (a link ``to-<peer>`` to anything else is ignored)
    """

    log = txaio.make_logger()

    def __init__(self, state: LinkStates, peers: Sequence[str]) -> None:
        self.state = state
        self.peers = list(peers)
        #: handlers forgotten and dropped so far, per peer (for tests and the log)
        self.repairs: Dict[str, Dict[str, int]] = {}

    def _count(self, peer: str, what: str, n: int) -> None:
        counts = self.repairs.setdefault(peer, {"forgotten": 0, "dropped": 0, "connections": 0})
        counts[what] += n

    def connecting(self, remote: Any) -> None:
        """A link's remote leg opens a new connection (before it joins)."""
        link_id = link_id_of(remote)
        peer = peer_of(link_id, self.peers)
        forgotten = forget_previous_connection(remote)
        if peer is None:
            return
        self._count(peer, "connections", 1)
        if forgotten:
            self._count(peer, "forgotten", forgotten)
            self.log.info("deptcast links: the link to {peer} reconnects; forgot the {n} event handlers of "
                          "its previous connection (each would deliver every event from {peer} once more)",
                          peer=peer, n=forgotten)
        if not getattr(remote, "_deptcast_watched", False):
            remote._deptcast_watched = True
            remote.on("ready", lambda session, *a, **kw: self._ready(peer, session))
            remote.on("leave", lambda session, *a, **kw: self._lost(peer))
            remote.on("disconnect", lambda session, *a, **kw: self._lost(peer))

    def subscribed(self, remote: Any, subscription: Any) -> None:
        """A subscribe of a link's remote leg returned ``subscription``."""
        if not isinstance(subscription, Subscription):
            return
        dropped = keep_newest_handler(remote, subscription)
        if dropped:
            peer = peer_of(link_id_of(remote), self.peers) or "?"
            self._count(peer, "dropped", dropped)
            self.log.info("deptcast links: the link to {peer} subscribed {topic} a second time; "
                          "dropped {n} extra handler(s)", peer=peer, topic=subscription.topic, n=dropped)

    def _ready(self, peer: str, session: Any) -> None:
        # 'ready' follows the re-subscribe even when the connection was lost during it (its
        # subscribes fail, the link catches that): a link lost meanwhile is not up
        if not session.is_attached():
            return
        self.log.info("deptcast links: the link to {peer} is up and carries this node's topics", peer=peer)
        self.state.up(peer)

    def _lost(self, peer: str) -> None:
        if self.state.is_up(peer) is not False:
            self.log.info("deptcast links: the link to {peer} is down; it reconnects with back-off", peer=peer)
        self.state.down(peer)


_watch: Optional[LinkWatch] = None


def _on_connect(upstream: Any) -> Any:
    def onConnect(self):
        if _watch is not None:
            try:
                _watch.connecting(self)
            except Exception:
                _watch.log.failure("deptcast links: the link repair failed on reconnect")
        return upstream(self)
    return onConnect


def _subscribe(upstream: Any) -> Any:
    def subscribe(self, handler, topic=None, options=None, check_types=None):
        d = upstream(self, handler, topic=topic, options=options, check_types=check_types)

        def dedupe(result):
            if _watch is not None:
                try:
                    _watch.subscribed(self, result)
                except Exception:
                    _watch.log.failure("deptcast links: the link repair failed on subscribe")
            return result
        return d.addCallback(dedupe)
    return subscribe


def _repair(wiring: Wiring) -> None:
    """Put a :class:`LinkWatch` reporting to ``wiring.links`` in charge of every rlink remote
    leg of this process (the class's ``onConnect`` and ``subscribe`` call it)."""
    global _watch
    _watch = LinkWatch(wiring.links, wiring.peers)
    replace("crossbar.worker.rlink.RLinkRemoteSession.onConnect", RLinkRemoteSession, "onConnect",
            _on_connect(RLinkRemoteSession.__dict__["onConnect"]))
    replace("autobahn.wamp.protocol.ApplicationSession.subscribe", RLinkRemoteSession, "subscribe",
            _subscribe(RLinkRemoteSession.subscribe))
    wiring.links.watching = True


def _forget_watch() -> None:
    global _watch
    if _watch is not None:
        _watch.state.watching = False
    _watch = None


def _shape(wiring: Wiring) -> Optional[str]:
    return "no link state to report to" if wiring.links is None else None


def watch() -> Optional[LinkWatch]:
    """The watch in charge of this process's links, once the patch is applied.

    :rtype: LinkWatch or None
    """
    return _watch


REPAIR = register(Patch(
    name="rlinks.repair",
    replaces=("crossbar.worker.rlink.RLinkRemoteSession.onConnect",
              "autobahn.wamp.protocol.ApplicationSession.subscribe"),
    checked={
        "crossbar.worker.rlink.RLinkRemoteSession.onConnect":
            "7c8d25dbfe5b96573366f4e695cee01a201109ff5d9ebc2bf4b83e5f5090830f",
        # one remote leg object per link, reused by every reconnect, its local leg (and the
        # link id) in its config; 'ready' once the local leg's re-subscribe is done
        "crossbar.worker.rlink.RLinkManager.start_link":
            "17267a0a330d99be8adc3cb605357d654b056edccf1db8bfb8beb276baedfd15",
        "crossbar.worker.rlink.RLinkRemoteSession.onJoin":
            "3e032f80853eee03dad8eed3fdfd9d5d6e137161f226c24b7f00faf74a2598c7",
        # the re-subscribe (its guard looks at sub only after the remote subscribe returned)
        "crossbar.worker.rlink.BridgeSession._setup_event_forwarding":
            "2bfcdede1b5c0fc699275e1bc37feda48595c023a3c9ce8df688c29254827b2c",
        # an Autobahn session keeps its handlers across connections: made once, appended on
        # SUBSCRIBED, never cleared when the connection closes
        "autobahn.wamp.protocol.ApplicationSession.__init__":
            "2911322a9b4870d1497364818b1fc36849ae44630129857ad92866faac143931",
        "autobahn.wamp.protocol.ApplicationSession.subscribe":
            "1c68ec6170698998aa1830583c31311dcbbaccc2685634f238398c04b523428e",
        "autobahn.wamp.protocol.ApplicationSession.onMessage":
            "39988f4f3331c85ea8b31405dba54188814f85bc28e0077311a29ee3a863721f",
        "autobahn.wamp.protocol.ApplicationSession.onClose":
            "7ce2ec7eac8ac4e6445e1325960f8603a4ad8c6c4ccf6d4feb97fb4b87f2d1f6",
    },
    why="after a link's connection drops and comes back, Autobahn keeps the remote leg's old event handlers "
        "and the peer answers the re-subscribe with the same subscription id: every event from the peer is "
        "then delivered twice (once more after every further drop); also reports each link up/down to the "
        "legacy fan-out and presence",
    upstream_issue="crossbario/crossbar#1916",
    remove_when="Crossbar's rlink (or Autobahn's session) drops a session's handlers when its connection ends "
                "(crossbario/crossbar#1916), and Crossbar reports a link's state to the components",
    apply=_repair,
    undo=_forget_watch,
    shape=_shape,
))

#: the one patch of this area
PATCHES = (REPAIR,)

__all__ = ["LINK_ID_PREFIX", "PATCHES", "REPAIR", "LinkWatch", "forget_previous_connection", "keep_newest_handler",
           "link_id_of", "peer_of", "watch"]
