"""The node's health state: what the router worker's parts report about themselves,
gathered for ``/health`` and ``/metrics`` (the verdict on it is :mod:`components.core.verdict`).

Every part reports into the runtime's :class:`NodeHealth` (``runtime().health``):

- each component when it joins and leaves (:class:`~components.wamp.base.NodeComponent`);
- the legacy endpoint when a socket opens and closes;
- the operations component (:mod:`components.wamp.operations`) as the :class:`Observer` of
  sessions, links and the router, and when the node starts draining;
- the node's composition root (:mod:`components.wamp.root`), the state of each upstream patch.

The store's state (kept current by :class:`~components.service.storeprobe.StoreProbe`) and the
send hold come from the message service itself. Reading all of it is
a few dictionary lookups: ``/health`` may be polled every second.
"""

import secrets
from typing import Any, Dict, List, Optional, Protocol, Set

from components.core.settings import Settings
from components.core.verdict import Facts, Verdict, judge

#: the components every node runs (their ``who``), all of which must join for it to serve
EXPECTED_COMPONENTS = ("root", "auth", "sessions", "api", "presence", "bridge", "ops")


class Observer(Protocol):
    """What the operations component knows of the router: sessions, links, subscriptions."""

    def links_in(self) -> Set[str]:
        """Peers whose link session is joined on this node."""

    def links_out(self) -> Set[str]:
        """Peers this node's own link is connected to."""

    def wamp_sessions(self) -> int:
        """Client WAMP sessions joined on this node."""

    def users_online(self) -> int:
        """Distinct users (department, user id) with a WAMP session on this node."""

    def subscribers(self) -> Dict[str, int]:
        """Client subscriptions on this node, by topic kind (dept, all, user, presence)."""

    def router_events_sent(self) -> Optional[int]:
        """EVENT messages the router has sent to any session since it started."""


class NodeHealth:
    """The node's state as its parts report it.

    :ivar instance: a random id for this start of the router worker (a rolling restart tells
        the new process from the old one by it)
    :ivar draining: the node is stopping and has asked its clients to go elsewhere
    :ivar observer: the operations component, once it has joined
    :ivar legacy: the open legacy sockets
    :ivar patches: the state of each upstream patch (``{"name", "state", "reason"?}``), once the
        composition root installed them
    """

    def __init__(self, clock: Any) -> None:
        self._clock = clock
        self.started = clock.seconds()
        self.instance = secrets.token_hex(6)
        self.draining = False
        self.observer: Optional[Observer] = None
        self.legacy: Set[Any] = set()
        self.patches: List[Dict[str, str]] = []
        self._joined: Set[str] = set()

    # -- reports

    def joined(self, who: str) -> None:
        self._joined.add(who)

    def left(self, who: str) -> None:
        self._joined.discard(who)

    def legacy_opened(self, sock: Any) -> None:
        self.legacy.add(sock)

    def legacy_closed(self, sock: Any) -> None:
        self.legacy.discard(sock)

    # -- the verdict

    def sessions(self) -> Dict[str, int]:
        """Connected clients by kind.

        :rtype: dict
        """
        wamp = self.observer.wamp_sessions() if self.observer is not None else 0
        return {"wamp": wamp, "legacy": len(self.legacy)}

    def facts(self, settings: Settings, service: Any) -> Facts:
        """The facts as they are now.

        :param service: the node's message service, or ``None`` while there is none
        :rtype: Facts
        """
        store_states: Dict[str, Optional[bool]] = {"writes": None, "reads": None}
        if service is not None:
            store_states = service.store.states
        observer = self.observer
        return Facts(
            node=settings.node_name,
            expected=EXPECTED_COMPONENTS,
            joined=set(self._joined),
            store_kind="postgresql" if settings.db_is_postgres else "sqlite",
            store_ready=bool(service is not None and service.store_ready),
            store_writes=store_states["writes"],
            store_reads=store_states["reads"],
            accepting_sends=bool(service is not None and service.gate.is_open),
            peers=settings.peers,
            links_in=observer.links_in() if observer is not None else set(),
            links_out=observer.links_out() if observer is not None else set(),
            draining=self.draining,
            sessions=self.sessions(),
            uptime=self._clock.seconds() - self.started,
            instance=self.instance,
            patches=tuple(self.patches),
        )

    def verdict(self, settings: Settings, service: Any) -> Verdict:
        """:rtype: Verdict"""
        return judge(self.facts(settings, service))
