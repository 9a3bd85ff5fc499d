"""The rules of a node's health: from the facts its parts report, the verdict behind
``GET /health``.

Two questions, two answers:

- *serving*: this node can take clients now. Its components have joined, its store's schema
  is in place and the store answers writes and reads, it accepts sends (a starting cluster
  node holds them until its peers' links are up, see :mod:`components.wamp.linkgate`), and
  it is not stopping. A load balancer that checks actively should ask this
  (``/health/serving``): a peer that is down must not take every node out of rotation.
- *healthy*: serving, and both links with every configured peer are up: the peer's link
  session is joined here (it pulls this node's events) and this node's own link to the peer
  is connected (it pulls the peer's). ``/health`` answers 200 only then: what monitoring and
  a rolling restart wait for.

Everything here is plain data; the facts come from state the node keeps anyway (no store
round trip per request).
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set

#: the ``status`` of a node that is healthy, serves with some link down, does not serve, stops
OK = "ok"
DEGRADED = "degraded"
DOWN = "down"
DRAINING = "draining"


def _state(up: Optional[bool]) -> str:
    return "unknown" if up is None else ("up" if up else "down")


@dataclass(frozen=True)
class Facts:
    """What a node knows about itself at one moment.

    :ivar node: the node's name
    :ivar expected: the components a node runs (their short names)
    :ivar joined: the components that have joined the realm
    :ivar store_kind: ``sqlite`` or ``postgresql``
    :ivar store_ready: the store's schema is in place
    :ivar store_writes: writes last found the store answering (``None``: not asked yet)
    :ivar store_reads: reads last found the store answering (``None``: not asked yet)
    :ivar accepting_sends: the message service does not hold sends (its link gate is open)
    :ivar peers: the other nodes of the cluster
    :ivar links_in: peers whose link session is joined on this node
    :ivar links_out: peers this node's own link is connected to
    :ivar draining: the node is stopping and has asked its clients to go elsewhere
    :ivar sessions: connected client sessions by kind (``wamp``, ``legacy``)
    :ivar uptime: seconds since the router worker started
    :ivar instance: tells one start of the node from the next
    :ivar patches: the state of each upstream patch, ``{"name", "state", "reason"?}``
        (:mod:`components.upstream`); listed, never a problem: a patch not applied leaves
        upstream's own behaviour in place
    """

    node: str
    expected: Sequence[str]
    joined: Set[str]
    store_kind: str = "sqlite"
    store_ready: bool = False
    store_writes: Optional[bool] = None
    store_reads: Optional[bool] = None
    accepting_sends: bool = False
    peers: Sequence[str] = ()
    links_in: Set[str] = field(default_factory=set)
    links_out: Set[str] = field(default_factory=set)
    draining: bool = False
    sessions: Mapping[str, int] = field(default_factory=dict)
    uptime: float = 0.0
    instance: str = ""
    patches: Sequence[Mapping[str, str]] = ()


@dataclass(frozen=True)
class Verdict:
    """The answer to ``/health``: whether the node serves, whether it is healthy, and why not."""

    serving: bool
    healthy: bool
    status: str
    problems: List[str]
    body: Dict[str, Any]


def problems_serving(facts: Facts) -> List[str]:
    """What keeps the node from serving clients, in words an operator can act on.

    :rtype: list
    """
    found = []
    if facts.draining:
        found.append("the node is stopping: its clients were asked to reconnect elsewhere")
    missing = [who for who in facts.expected if who not in facts.joined]
    if missing:
        found.append("components not joined: " + ", ".join(missing))
    if not facts.store_ready:
        found.append("the store's schema is not ready (the store is unreachable or the node is starting)")
    if facts.store_writes is False:
        found.append("store writes are failing")
    if facts.store_reads is False:
        found.append("store reads are failing")
    if not facts.accepting_sends and "root" in facts.joined:
        found.append("holding sends until the peers' links are up (the node is starting)")
    return found


def problems_links(facts: Facts) -> List[str]:
    """Links that are down: a peer's link here (it misses this node's messages) and this
    node's link to a peer (this node misses the peer's messages).

    :rtype: list
    """
    found = []
    for peer in facts.peers:
        if peer not in facts.links_in:
            found.append(f"link from {peer} down: {peer}'s subscribers miss messages sent via this node")
        if peer not in facts.links_out:
            found.append(f"link to {peer} down: this node's subscribers miss messages sent via {peer}")
    return found


def judge(facts: Facts) -> Verdict:
    """The verdict on ``facts``, with the JSON body ``/health`` answers.

    :rtype: Verdict
    """
    blocking = problems_serving(facts)
    links = problems_links(facts)
    serving = not blocking
    healthy = serving and not links
    if facts.draining:
        status = DRAINING
    elif not serving:
        status = DOWN
    elif links:
        status = DEGRADED
    else:
        status = OK
    problems = blocking + links
    body: Dict[str, Any] = {
        "node": facts.node,
        "status": status,
        "serving": serving,
        "problems": problems,
        "components": {who: who in facts.joined for who in facts.expected},
        "store": {"kind": facts.store_kind, "ready": facts.store_ready,
                  "writes": _state(facts.store_writes), "reads": _state(facts.store_reads)},
        "accepting_sends": facts.accepting_sends,
        "links": {peer: {"in": _state(peer in facts.links_in), "out": _state(peer in facts.links_out)}
                  for peer in facts.peers},
        "sessions": dict(facts.sessions),
        "uptime_s": round(facts.uptime, 1),
        "instance": facts.instance,
        "patches": [dict(p) for p in facts.patches],
    }
    return Verdict(serving, healthy, status, problems, body)
