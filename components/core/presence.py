"""Who is online: a book of client sessions per (node, department, user), across a cluster.

Pure logic, no reactor; the WAMP adapter is :mod:`components.wamp.presence`.

Each node knows its own client sessions one by one (WAMP sessions from the router's meta
API, and the legacy endpoint's sockets, which count exactly like sessions) and its peers'
only as counts per (department, user), which the peers send as snapshots and deltas. A
user is *online* while it has at least one session on any node. Every method that changes
the book returns the :class:`Change` list of users whose cluster-wide state flipped, so the
adapter publishes exactly one event per change.

Messages between nodes' presence components (on :data:`~components.core.names.PRESENCE_INTERNAL_TOPIC`)::

    {"kind": "delta", "from": node, "dept": d, "user": u, "sessions": n}   # n: now on node
    {"kind": "request", "from": node, "to": peer}                          # send me a snapshot
    {"kind": "snapshot", "from": node, "to": peer, "entries": [[d, u, n], ...]}
"""

from dataclasses import dataclass
from typing import Any, Dict, Hashable, Iterable, List, Optional, Sequence, Tuple

from components.core import names
from components.core.errors import INVALID_FRAME, Refused

Key = Tuple[str, str]  # (dept, user)


@dataclass(frozen=True)
class Change:
    """A user came online (first session anywhere) or went offline (last session gone).

    :ivar count: the number of distinct users online in ``dept`` after the change
    """

    dept: str
    user: str
    online: bool
    count: int

    def event(self) -> Dict[str, Any]:
        """The payload published on ``deptcast.presence.<dept>``."""
        return {"dept": self.dept, "user": self.user, "online": self.online, "count": self.count}


class PresenceBook:
    """The sessions of one node and the session counts of its peers.

    :param node: this node's name
    """

    def __init__(self, node: str) -> None:
        self.node = node
        self._sessions: Dict[Hashable, Key] = {}         # local session (id, or a legacy socket) -> (dept, user)
        self._by_node: Dict[str, Dict[Key, int]] = {node: {}}
        self._totals: Dict[str, Dict[str, int]] = {}     # dept -> user -> sessions on all nodes

    # ------------------------------------------------------------------ queries

    def online(self, dept: str) -> List[str]:
        """The distinct users online in ``dept`` on any node, sorted.

        :rtype: list
        """
        return sorted(self._totals.get(dept, {}))

    def count(self, dept: str) -> int:
        return len(self._totals.get(dept, {}))

    def local_sessions(self, dept: str, user: str) -> int:
        """How many sessions ``user`` of ``dept`` has on this node."""
        return self._by_node[self.node].get((dept, user), 0)

    def has_session(self, session: Hashable) -> bool:
        return session in self._sessions

    def key_of(self, session: Hashable) -> Optional[Key]:
        """``(dept, user)`` of a local session, or ``None`` if it is not in the book."""
        return self._sessions.get(session)

    def snapshot(self, node: Optional[str] = None) -> List[List[Any]]:
        """``[[dept, user, sessions], ...]`` of ``node`` (default: this one), sorted.

        :rtype: list
        """
        entries = self._by_node.get(node or self.node, {})
        return [[d, u, n] for (d, u), n in sorted(entries.items())]

    def nodes(self) -> List[str]:
        """The nodes with at least one session in the book, sorted."""
        return sorted(n for n, entries in self._by_node.items() if entries)

    # ------------------------------------------------------------------ this node

    def join(self, session: Hashable, dept: str, user: str) -> List[Change]:
        """A client session (a WAMP session id, or a legacy socket) joined this node; joining
        twice is a no-op.

        :rtype: list
        """
        if session in self._sessions:
            return []
        self._sessions[session] = (dept, user)
        return self._set(self.node, (dept, user), self.local_sessions(dept, user) + 1)

    def leave(self, session: Hashable) -> List[Change]:
        """A session left this node; unknown sessions (not clients) are ignored.

        :rtype: list
        """
        key = self._sessions.pop(session, None)
        if key is None:
            return []
        return self._set(self.node, key, self.local_sessions(*key) - 1)

    # ------------------------------------------------------------------ peers

    def set_remote(self, node: str, dept: str, user: str, sessions: int) -> List[Change]:
        """A peer says ``user`` now has ``sessions`` sessions on it.

        :rtype: list
        """
        if node == self.node:
            return []
        return self._set(node, (dept, user), sessions)

    def replace(self, node: str, entries: Iterable[Sequence[Any]]) -> List[Change]:
        """A peer's whole snapshot replaces what the book held for it.

        :param entries: ``(dept, user, sessions)`` triples
        :rtype: list
        """
        if node == self.node:
            return []
        new = {(d, u): n for d, u, n in entries if n > 0}
        changes: List[Change] = []
        for key in list(self._by_node.get(node, {})):
            if key not in new:
                changes += self._set(node, key, 0)
        for key, n in sorted(new.items()):
            changes += self._set(node, key, n)
        return changes

    def drop(self, node: str) -> List[Change]:
        """Forget every session of peer ``node`` (its link to this node went away).

        :rtype: list
        """
        return self.replace(node, [])

    # ------------------------------------------------------------------ internals

    def _set(self, node: str, key: Key, sessions: int) -> List[Change]:
        entries = self._by_node.setdefault(node, {})
        before = entries.get(key, 0)
        sessions = max(0, sessions)
        if sessions == before:
            return []
        if sessions:
            entries[key] = sessions
        else:
            del entries[key]
        dept, user = key
        users = self._totals.setdefault(dept, {})
        was_online = user in users
        total = users.get(user, 0) + sessions - before
        if total > 0:
            users[user] = total
        else:
            users.pop(user, None)
            if not users:
                del self._totals[dept]
        if was_online == (total > 0):
            return []
        return [Change(dept, user, total > 0, self.count(dept))]


def online_answer(book: PresenceBook, dept: str) -> Dict[str, Any]:
    """The result of ``deptcast.presence.online(dept)``.

    :rtype: dict
    """
    users = book.online(dept)
    return {"dept": dept, "count": len(users), "users": users}


def check_dept(dept: Any) -> str:
    """``dept`` if it is a valid department code.

    :raises Refused: ``invalid_frame`` otherwise
    :rtype: str
    """
    if not names.is_name(dept):
        raise Refused(INVALID_FRAME, "'dept' must be a department code: 1-64 letters, digits, '.' or '-'")
    return dept


def parse_internal(msg: Any, me: str, peers: Sequence[str]) -> Optional[Dict[str, Any]]:
    """Check a message from a peer's presence component; ``None`` if it is not for us.

    Only messages from a known peer are taken; requests and snapshots addressed to another
    node are ignored (every node's link may carry them). A ``deltas`` message (several users'
    local session counts, ``entries``: ``[[dept, user, sessions], ...]``) keeps its valid
    entries.

    :rtype: dict or None
    """
    if not isinstance(msg, dict) or msg.get("from") not in peers or msg.get("from") == me:
        return None
    kind = msg.get("kind")
    if kind == "delta":
        return msg if _count_of(msg.get("dept"), msg.get("user"), msg.get("sessions"), 0) else None
    if kind == "deltas":
        return _with_entries(msg, least=0)
    if kind in ("request", "snapshot") and msg.get("to") != me:
        return None
    if kind == "request":
        return msg
    if kind == "snapshot":
        return _with_entries(msg, least=1)
    return None


def _count_of(dept: Any, user: Any, n: Any, least: int) -> bool:
    """Whether ``(dept, user, n)`` is a person's session count of at least ``least``."""
    return (names.is_name(dept) and names.is_name(user)
            and isinstance(n, int) and not isinstance(n, bool) and n >= least)


def _with_entries(msg: Dict[str, Any], least: int) -> Optional[Dict[str, Any]]:
    """``msg`` with only its well-formed ``[dept, user, count]`` entries (counts of at least
    ``least``), or ``None`` if it has no list of entries."""
    entries = msg.get("entries")
    if not isinstance(entries, list):
        return None
    return {**msg, "entries": [e for e in entries if isinstance(e, (list, tuple)) and len(e) == 3
                               and _count_of(e[0], e[1], e[2], least)]}


def forget_peer_on(link_session_here: bool, own_link_up: Optional[bool]) -> bool:
    """Whether to forget a peer's users now, from what this node knows of the two links
    between it and the peer.

    The peer's deltas reach this node over this node's own link to the peer; the peer's link
    session on this node only carries this node's deltas the other way. So while this node's
    link to the peer is up, the peer is running and its deltas still arrive: keep its users,
    even if its link session here left (its link to us dropped for a moment). Forget them once
    neither link is there (the peer stopped, or is cut off). When this node does not know the
    state of its own link (``None``: nothing watches the links), the peer's link session
    leaving is taken as the peer stopping.

    :param link_session_here: whether a link session of the peer is on this node
    :param own_link_up: whether this node's link to the peer is up (``None``: unknown)
    :rtype: bool
    """
    if link_session_here:
        return False
    return own_link_up is not True
