"""Who is connected to a node and what they subscribe to, counted: the bookkeeping behind
``/health``'s sessions and links and ``/metrics``' sessions, users and subscribers.

Fed with the router's meta events (sessions joining and leaving, subscriptions made and
dropped); answers counts only, never names.
"""

from typing import Dict, Optional, Set, Tuple

from components.core import names
from components.core.names import CLIENT_ROLES, RLINK_ROLE


def topic_kind(topic: str) -> Optional[str]:
    """The kind of a client topic (``dept``, ``all``, ``user``, ``presence``), else ``None``.

    :rtype: str or None
    """
    if topic == names.TOPIC_ALL:
        return "all"
    for prefix, kind in ((names.TOPIC_DEPT, "dept"), (names.TOPIC_USER, "user"), (names.TOPIC_PRESENCE, "presence")):
        if topic.startswith(prefix):
            return kind
    return None


class Census:
    """Client sessions, peers' link sessions and client subscriptions of one node.

    :param peers: the node's configured peers (link sessions of others are not counted)
    """

    def __init__(self, peers=()) -> None:
        self._peers = set(peers)
        self._clients: Dict[int, Tuple[str, str]] = {}   # session -> (dept, user)
        self._links: Dict[int, str] = {}                 # session -> peer
        self._topics: Dict[int, str] = {}                # subscription -> topic
        self._members: Dict[int, Set[int]] = {}          # subscription -> client sessions
        self._held: Dict[int, Set[int]] = {}             # client session -> its subscriptions

    # -- sessions

    def joined(self, session_id: int, authrole: Optional[str], authid: Optional[str],
               dept: Optional[str] = None) -> None:
        if authrole in CLIENT_ROLES and isinstance(dept, str) and isinstance(authid, str):
            self._clients[session_id] = (dept, authid)
        elif authrole == RLINK_ROLE and isinstance(authid, str) and authid in self._peers:
            self._links[session_id] = authid

    def left(self, session_id: int) -> None:
        self._clients.pop(session_id, None)
        self._links.pop(session_id, None)
        # its own subscriptions only (every client has its own user topic: looking through all
        # of them made a storm's departures quadratic)
        for subscription_id in self._held.pop(session_id, ()):
            members = self._members.get(subscription_id)
            if members is not None:
                members.discard(session_id)

    def knows(self, session_id: int) -> bool:
        return session_id in self._clients or session_id in self._links

    # -- subscriptions

    def created(self, subscription_id: int, topic: str) -> None:
        self._topics[subscription_id] = topic

    def subscribed(self, session_id: int, subscription_id: int) -> None:
        if session_id in self._clients:
            self._members.setdefault(subscription_id, set()).add(session_id)
            self._held.setdefault(session_id, set()).add(subscription_id)

    def unsubscribed(self, session_id: int, subscription_id: int) -> None:
        members = self._members.get(subscription_id)
        if members is not None:
            members.discard(session_id)
        held = self._held.get(session_id)
        if held is not None:
            held.discard(subscription_id)

    def deleted(self, subscription_id: int) -> None:
        self._topics.pop(subscription_id, None)
        for session_id in self._members.pop(subscription_id, ()):
            held = self._held.get(session_id)
            if held is not None:
                held.discard(subscription_id)

    # -- counts

    @property
    def client_sessions(self) -> int:
        return len(self._clients)

    @property
    def users(self) -> int:
        """Distinct (department, user) pairs with a session here."""
        return len(set(self._clients.values()))

    @property
    def peers_linked(self) -> Set[str]:
        """Peers with a link session joined here."""
        return set(self._links.values())

    def subscribers(self) -> Dict[str, int]:
        """Client subscriptions by topic kind (every kind present, 0 when none).

        :rtype: dict
        """
        counts = {"dept": 0, "all": 0, "user": 0, "presence": 0}
        for subscription_id, members in self._members.items():
            kind = topic_kind(self._topics.get(subscription_id, ""))
            if kind is not None:
                counts[kind] += len(members)
        return counts
