"""``deptcast.presence.online`` and the ``deptcast.presence.<dept>`` events: a thin WAMP
adapter over :mod:`components.core.presence`.

This node's client sessions come from the router's meta API (``wamp.session.on_join`` /
``on_leave``, and ``wamp.session.list`` at start); the legacy endpoint's sockets, which the
meta API does not see, from the runtime's
:class:`~components.service.presence.LegacyUsers`: a legacy socket counts exactly like a
WAMP session of its key's user. Calls are not forwarded over router
links, so every node answers from its own book, which it keeps in step with its peers
over the exact topic :data:`~components.core.names.PRESENCE_INTERNAL_TOPIC` (events on exact topics
do cross the links):

- each node publishes a *delta* when one of its users' local session count changes; once every
  peer has said that it reads them (its snapshot requests and snapshots say ``"deltas": true``),
  the changes of :data:`DELTAS_WINDOW` seconds go out together, one *deltas* message of each
  user's count at the time (a storm of connecting clients was a delta published to the peers,
  and republished by each peer's link, per client: a tenth of a cluster node's CPU);
- a node asks each peer for a *snapshot* of its sessions when it starts, whenever that
  peer's link session joins it, and whenever its own link to that peer is back up (it may
  have missed deltas while it was down), repeating (with back-off) until the snapshot arrives;
- a node forgets a peer's sessions once neither link between them is there (the peer's link
  session here left and this node's own link to the peer is down: the peer stopped); while
  its own link to the peer is up, the peer's deltas still arrive, so a blip of the peer's
  link to this node changes nothing (:func:`~components.core.presence.forget_peer_on`).

Client events are published to this node's own subscribers only (the links' sessions are
excluded): every node publishes the changes it sees, so a client hears each change once,
from its own node.
"""

from typing import Any, Dict, Hashable, List, Optional, Set

from autobahn.wamp.types import PublishOptions, RegisterOptions
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks

from components.core import names
from components.core.errors import NOT_AUTHORIZED, RATE_LIMITED, Refused
from components.core.names import CLIENT_ROLES, PRESENCE_INTERNAL_TOPIC, RLINK_ROLE
from components.core.presence import (Change, PresenceBook, check_dept, forget_peer_on, online_answer,
                                      parse_internal)
from components.core.ratelimit import RateLimiter
from components.core.settings import Settings
from components.service.runtime import runtime
from components.upstream import sessions
from components.upstream.worker import router_of
from components.wamp.base import NodeComponent, client_errors, scan_sessions
from components.wamp.callers import Callers

#: seconds before the first repeat of a snapshot request, and the most between two
REQUEST_FIRST = 0.2
REQUEST_MAX = 2.0
#: seconds of local changes that go out to the peers in one ``deltas`` message
DELTAS_WINDOW = 0.05
#: most users in one ``deltas`` message
DELTAS_MAX = 500


class PresenceComponent(NodeComponent):
    """Keeps the presence book of this node and answers ``deptcast.presence.online``."""

    who = "presence"

    @inlineCallbacks
    def start(self, settings: Settings):
        self._node = settings.node_name
        self._peers = list(settings.peers)
        self._book = PresenceBook(self._node)
        self._callers = Callers(self)
        # each answer costs O(users in the department): per user, per node
        self._limiter = RateLimiter(settings.presence_rate, settings.presence_burst)
        self._presence_rate = settings.presence_rate
        self._links: Dict[int, str] = {}            # a peer's link session on this node -> peer
        self._asking: Dict[str, Any] = {}           # peer -> [delay, pending DelayedCall]
        self._synced: Set[str] = set()              # peers whose snapshot we hold
        self._scan_left: Optional[Set[int]] = set()  # sessions that left while the start scan ran
        self._read_deltas: Set[str] = set()          # peers that said they read ``deltas``
        self._changed: Dict[Any, None] = {}          # (dept, user) changed since the last deltas, in order
        self._flush: Any = None                      # the pending DelayedCall that sends them
        yield self.follow_meta(self._on_session_join, "wamp.session.on_join")
        yield self.follow_meta(self._on_session_leave, "wamp.session.on_leave")
        if self._peers:
            yield self.subscribe(self._on_internal, PRESENCE_INTERNAL_TOPIC)
        yield self._scan()
        # legacy sockets: those already open, then every change
        legacy = runtime().legacy_users
        for sock, dept, user in legacy.open_sockets():
            self.legacy_opened(sock, dept, user)
        legacy.listen(self)
        links = runtime().links
        links.on_up(self._own_link_up)
        links.on_down(self._own_link_down)
        yield self.register(self.online, names.PROC_PRESENCE_ONLINE,
                            options=RegisterOptions(details_arg="details"))
        for peer in self._peers:
            self._ask(peer)
        self.log.info("deptcast presence: online and presence events ready on node {node} "
                      "({users} local users; peers: {peers})", node=self._node,
                      users=len(self._book.snapshot()), peers=", ".join(self._peers) or "none")

    def onLeave(self, details):
        flush = getattr(self, "_flush", None)
        if flush is not None and flush.active():
            flush.cancel()
        for entry in getattr(self, "_asking", {}).values():
            if entry[1] is not None and entry[1].active():
                entry[1].cancel()
        if hasattr(self, "_book"):
            runtime().legacy_users.listen(None)
            runtime().links.remove(self._own_link_up)
            runtime().links.remove(self._own_link_down)
        super().onLeave(details)

    # ------------------------------------------------------------------ the procedure

    @client_errors("deptcast presence")
    async def online(self, dept=None, *args, details=None, **kwargs):
        """``{"dept", "count", "users"}``: who is online in ``dept`` on any node of the cluster."""
        identity = await self._callers.identity(details)
        if not self._limiter.allow(identity.key, reactor.seconds()):
            raise Refused(RATE_LIMITED, f"too many presence calls; slow down to {self._presence_rate:g} per second")
        check_dept(dept)
        if not identity.is_publisher and dept != identity.dept:
            raise Refused(NOT_AUTHORIZED, "a member may only ask about its own department")
        return online_answer(self._book, dept)

    # ------------------------------------------------------------------ local sessions

    @inlineCallbacks
    def _scan(self):
        """Take in the client and link sessions that joined before this component."""
        yield scan_sessions(self, list(CLIENT_ROLES) + [RLINK_ROLE],
                            lambda sid: self._book.has_session(sid) or sid in self._links, self._scan_left,
                            lambda info: self._on_session_join(info, announce_links=False))
        self._scan_left = None

    def _on_session_join(self, info: Dict[str, Any], *args, announce_links: bool = True, **kwargs) -> None:
        if not isinstance(info, dict):
            return
        sid, role, authid = info.get("session"), info.get("authrole"), info.get("authid")
        if role == RLINK_ROLE and authid in self._peers:
            self._links[sid] = authid
            if announce_links:
                # the peer (re)started or its link came back: it may hold sessions we do not know
                self.log.info("deptcast presence: link from {peer} joined; asking for its sessions", peer=authid)
                self._ask(authid, fresh=True)
            return
        dept = (info.get("authextra") or {}).get("dept")
        if role not in CLIENT_ROLES or not names.is_name(dept) or not names.is_name(authid):
            return
        changes = self._book.join(sid, dept, authid)
        self._local_changed(dept, authid, changes)

    def _on_session_leave(self, session_id, *args, **kwargs) -> None:
        self._callers.forget(session_id)
        if self._scan_left is not None:
            self._scan_left.add(session_id)
        peer = self._links.pop(session_id, None)
        if peer is not None:
            if forget_peer_on(peer in self._links.values(), self._own_link_state(peer)):
                self._forget(peer, "its link to this node left")
            else:
                self.log.info("deptcast presence: link from {peer} left; keeping its users (this node's own "
                              "link to {peer} is up and carries its changes)", peer=peer)
            return
        key = self._book.key_of(session_id)
        if key is not None:
            self._local_changed(key[0], key[1], self._book.leave(session_id))

    # ------------------------------------------------------------------ legacy sockets

    def legacy_opened(self, socket: Hashable, dept: str, user: str) -> None:
        """A legacy socket of ``user`` in ``dept`` opened on this node: one more session."""
        if not names.is_name(dept) or not names.is_name(user):
            return
        self._local_changed(dept, user, self._book.join(socket, dept, user))

    def legacy_closed(self, socket: Hashable) -> None:
        key = self._book.key_of(socket)
        if key is not None:
            self._local_changed(key[0], key[1], self._book.leave(socket))

    # ------------------------------------------------------------------ this node's own links

    def _own_link_state(self, peer: str) -> Optional[bool]:
        links = runtime().links
        return links.is_up(peer) if links.watching else None

    def _own_link_up(self, peer: str) -> None:
        # deltas the peer published while this node's link to it was down never came
        if peer in self._peers and self.is_attached():
            self.log.info("deptcast presence: this node's link to {peer} is up; asking for its sessions", peer=peer)
            self._ask(peer, fresh=True)

    def _own_link_down(self, peer: str) -> None:
        if peer in self._peers and forget_peer_on(peer in self._links.values(), False):
            self._forget(peer, "this node's link to it is down and its link here is gone")

    def _forget(self, peer: str, why: str) -> None:
        changes = self._book.drop(peer)
        self._synced.discard(peer)
        self._read_deltas.discard(peer)
        self.log.info("deptcast presence: forgot the sessions of {peer}: {why} ({n} users went offline)",
                      peer=peer, why=why, n=len(changes))
        self._announce(changes)

    def _local_changed(self, dept: str, user: str, changes: List[Change]) -> None:
        """A local session count changed: tell the peers, and local subscribers if the user flipped."""
        if self._peers:
            if self._read_deltas.issuperset(self._peers):
                self._changed[(dept, user)] = None
                if self._flush is None:
                    self._flush = reactor.callLater(DELTAS_WINDOW, self._send_deltas)
            else:
                self._publish(PRESENCE_INTERNAL_TOPIC, {"kind": "delta", "from": self._node, "dept": dept,
                                                        "user": user,
                                                        "sessions": self._book.local_sessions(dept, user)})
        self._announce(changes)

    def _send_deltas_now(self) -> None:
        """Send what waits for the window before a snapshot (so no older deltas follow it)."""
        if self._flush is not None and self._flush.active():
            self._flush.cancel()
            self._send_deltas()

    def _send_deltas(self) -> None:
        """The local counts of the users changed since the last ``deltas``, as they are now."""
        self._flush = None
        changed, self._changed = list(self._changed), {}
        for start in range(0, len(changed), DELTAS_MAX):
            entries = [[d, u, self._book.local_sessions(d, u)] for d, u in changed[start:start + DELTAS_MAX]]
            self._publish(PRESENCE_INTERNAL_TOPIC, {"kind": "deltas", "from": self._node, "entries": entries})

    # ------------------------------------------------------------------ peers

    def _on_internal(self, msg: Any, *args, **kwargs) -> None:
        msg = parse_internal(msg, self._node, self._peers)
        if msg is None:
            return
        peer = msg["from"]
        if msg["kind"] in ("request", "snapshot") and msg.get("deltas") is True:
            self._read_deltas.add(peer)
        if msg["kind"] == "delta":
            self._announce(self._book.set_remote(peer, msg["dept"], msg["user"], msg["sessions"]))
        elif msg["kind"] == "deltas":
            for dept, user, count in msg["entries"]:
                self._announce(self._book.set_remote(peer, dept, user, count))
        elif msg["kind"] == "request":
            self._send_deltas_now()
            self._publish(PRESENCE_INTERNAL_TOPIC, {"kind": "snapshot", "from": self._node, "to": peer,
                                                    "entries": self._book.snapshot(), "deltas": True})
        elif msg["kind"] == "snapshot":
            changes = self._book.replace(peer, msg["entries"])
            if peer not in self._synced:
                self._synced.add(peer)
                self.log.info("deptcast presence: in step with {peer} ({n} of its users online)",
                              peer=peer, n=len({(d, u) for d, u, _ in msg["entries"]}))
            self._stop_asking(peer)
            self._announce(changes)

    def _ask(self, peer: str, fresh: bool = False) -> None:
        """Ask ``peer`` for its snapshot until it arrives (the request crosses a link only once
        the peer's link is subscribed here, the answer once ours is subscribed there)."""
        if fresh:
            self._synced.discard(peer)
            self._read_deltas.discard(peer)  # (re)started: it says again what it reads
            self._stop_asking(peer)
        if peer in self._synced or peer in self._asking:
            return
        self._asking[peer] = [REQUEST_FIRST, None]
        self._ask_again(peer)

    def _ask_again(self, peer: str) -> None:
        entry = self._asking.get(peer)
        if entry is None or peer in self._synced or not self.is_attached():
            self._asking.pop(peer, None)
            return
        self._publish(PRESENCE_INTERNAL_TOPIC, {"kind": "request", "from": self._node, "to": peer, "deltas": True})
        delay = entry[0]
        entry[0] = min(delay * 1.5, REQUEST_MAX)
        entry[1] = reactor.callLater(delay, self._ask_again, peer)

    def _stop_asking(self, peer: str) -> None:
        entry = self._asking.pop(peer, None)
        if entry is not None and entry[1] is not None and entry[1].active():
            entry[1].cancel()

    # ------------------------------------------------------------------ publishing

    def _announce(self, changes: List[Change]) -> None:
        # to this node's subscribers only: each node announces what it sees, so a change
        # forwarded over a link as well would reach the peer's subscribers twice; and only
        # where someone subscribes (a storm of new users would publish one each for nobody)
        router = router_of(self)
        for change in changes:
            topic = names.presence_topic(change.dept)
            if sessions.heard(router, topic):
                self._publish(topic, change.event(), PublishOptions(exclude_authrole=[RLINK_ROLE]))

    def _publish(self, topic: str, payload: Dict[str, Any], options: Optional[PublishOptions] = None) -> None:
        if not self.is_attached():
            return
        try:
            self.publish(topic, payload, options=options)
        except Exception as e:  # the session is going away; the next start takes it from the meta API
            self.log.warn("deptcast presence: could not publish on {topic}: {error}", topic=topic, error=str(e))
