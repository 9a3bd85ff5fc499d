"""Chaos on a 5-node full mesh (20 router links) under a steady send load: links dropped and
nodes restarted, exact delivery asserted.

One cluster, one test, to keep the suite short (a 5-node start is the expensive part). A
sender on every node sends to one department at a steady pace; a follower on every node
follows the department's topic as a robust client does: each ``seq`` once and in order,
asking history by position (``positions={topic: last seq shown}``) after a reconnect or a jump
in ``seq`` (:class:`tests.chaos.load.Follower`). Meanwhile:

1. three links drop at once (``ss -K`` on their TCP connections: n2 to n1, n4 to n3, n5 to
   n2) and come back by themselves;
2. two nodes stop at once, n5 killed (SIGKILL) and n3 stopped (SIGTERM), while the other
   three keep taking sends; both start again.

Then, read against the store itself (:func:`tests.chaos.load.check_delivery`): the topic's
``seq`` has no hole; every follower shows exactly the stored messages, each once, in ``seq``
order; no event reached a follower twice (Crossbar's links have delivered twice after a drop,
and a forwarded event once went to every link); every accepted send is stored; the
followers of the restarted nodes resumed by position.
"""

import signal
import time
from typing import Dict, List

import pytest
import pytest_twisted
from twisted.internet import defer, threads

from components.core import names
from components.core.names import RLINK_ROLE
from tests.chaos.load import Follower, WampSender, _sleep, check_delivery, check_refusals, wait_followers
from tests.cluster.test_linkdrop import drop_link, link_sessions
from tests.support.cluster import Cluster, _subscribers, wait_links_carry
from tests.support.nodes import token
from tests.support.pg import pg_schema
from tests.support.wamp import connect, connect_inspector, wait_for

NODES = 5
DEPT = "mesh5"
#: seconds between one sender's sends (5 senders: about 25 sends/s in all)
SEND_INTERVAL = 0.2
#: the links dropped at once: (node owning the link, peer)
DROPS = [("n2", "n1"), ("n4", "n3"), ("n5", "n2")]
#: the nodes stopped at once, and how
RESTARTS = {"n5": signal.SIGKILL, "n3": signal.SIGTERM}


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    with pg_schema("deptcast_mesh5") as db:
        c = Cluster(tmp_path_factory.mktemp("mesh5"), db, count=NODES)
        c.start(timeout=180)
        try:
            yield c
        finally:
            c.stop()


async def links_back(cluster: Cluster, topic: str, before: Dict[tuple, set], timeout: float = 60.0) -> None:
    """Wait until each dropped link has a new session subscribed to ``topic`` on its peer."""
    inspectors = {peer: await connect_inspector(cluster.nodes[peer].node_dir) for _, peer in DROPS}
    try:
        async def all_back() -> bool:
            for (node, peer), old in before.items():
                now = await link_sessions(inspectors[peer], node, topic)
                if not (now - old):
                    return False
            return True
        deadline = time.monotonic() + timeout
        while not await all_back():
            assert time.monotonic() < deadline, f"the dropped links did not come back in {timeout} s"
            await _sleep(0.05)
    finally:
        for inspector in inspectors.values():
            inspector.leave()


async def sessions_before_drop(cluster: Cluster, topic: str) -> Dict[tuple, set]:
    out = {}
    for node, peer in DROPS:
        inspector = await connect_inspector(cluster.nodes[peer].node_dir)
        try:
            out[(node, peer)] = await link_sessions(inspector, node, topic)
        finally:
            inspector.leave()
        assert len(out[(node, peer)]) == 1, (node, peer, out[(node, peer)])
    return out


async def accepted_by_all(senders: List[WampSender], since: float, what: str, count: int = 2,
                          timeout: float = 60.0) -> None:
    """Wait until each of ``senders`` had ``count`` sends issued after ``since`` accepted."""
    def enough() -> bool:
        return all(sum(1 for o in s.outcomes if o.issued >= since and o.accepted) >= count for s in senders)
    await wait_for(enough, timeout, what, interval=0.05)


@pytest_twisted.ensureDeferred
async def test_every_node_pulls_a_topic_subscribed_on_one_node(mesh):
    """What a notice costs the mesh: a topic with one subscriber, on n1, is pulled by the links
    of all four other nodes (each subscribes it on n1, and on each other), although none of
    them has a subscriber for it; so every node receives every such notice
    (docs/operating/cluster.md, how far the mesh goes)."""
    topic = names.user_topic(DEPT, "only-on-n1")
    client = await connect(mesh.nodes["n1"].url, token("only-on-n1", DEPT))
    inspectors = {name: await connect_inspector(node.node_dir) for name, node in mesh.nodes.items()}
    try:
        await client.listen(topic)

        async def links_on(name: str) -> set:
            return {authid for role, authid in await _subscribers(inspectors[name], topic) if role == RLINK_ROLE}

        # on n1, the links of all four others; on each other node, every other node's link
        # (they pass it on: a node forwards every subscription made on it, its peers' links' too)
        wanted = {name: set(mesh.nodes) - {name} for name in mesh.nodes}
        deadline = time.monotonic() + 60
        while True:
            now = {name: await links_on(name) for name in mesh.nodes}
            if now == wanted:
                break
            assert time.monotonic() < deadline, f"link sessions subscribed per node after 60 s: {now}"
            await _sleep(0.1)
    finally:
        await client.close()
        for inspector in inspectors.values():
            inspector.leave()


@pytest_twisted.ensureDeferred
async def test_five_node_mesh_delivers_exactly_once_through_link_drops_and_restarts(mesh, record_property):
    topic = names.dept_topic(DEPT)
    nodes = list(mesh.nodes.values())
    followers = [Follower(n.url, token(f"f-{n.name}", DEPT), topic) for n in nodes]
    for f in followers:
        await f.start()
    await wait_links_carry(mesh, [topic], timeout=60)
    senders = {n.name: WampSender(to=DEPT, prefix=f"via-{n.name}", interval=SEND_INTERVAL, url=n.url,
                                  token=token(f"s-{n.name}", DEPT)) for n in nodes}
    for s in senders.values():
        s.start()
    started = time.monotonic()
    try:
        await accepted_by_all(list(senders.values()), started, "every node to take sends")

        # 1. three links drop at once and come back by themselves
        before = await sessions_before_drop(mesh, topic)
        dropped = time.monotonic()
        for node, peer in DROPS:
            drop_link(mesh, node, peer)
        await links_back(mesh, topic, before)
        links_back_after = time.monotonic() - dropped
        await accepted_by_all(list(senders.values()), time.monotonic(), "sends via every node after the drops")

        # 2. two nodes stop at once while the others keep taking sends, then start again
        stopped = time.monotonic()
        await defer.gatherResults([threads.deferToThread(mesh.nodes[name].stop, sig)
                                   for name, sig in RESTARTS.items()], consumeErrors=True)
        staying = [s for name, s in senders.items() if name not in RESTARTS]
        await accepted_by_all(staying, time.monotonic(), "the other nodes to take sends while two are down",
                              count=5)
        await defer.gatherResults([threads.deferToThread(mesh.nodes[name].start, 180)
                                   for name in RESTARTS], consumeErrors=True)
        restarted = time.monotonic()
        await accepted_by_all(list(senders.values()), restarted, "sends via every node after the restarts")
        await wait_links_carry(mesh, [topic], timeout=60)
        await accepted_by_all(list(senders.values()), time.monotonic(), "sends once the links carry the topic")
    finally:
        for s in senders.values():
            await s.stop()

    rows = await wait_followers(followers, mesh.db, topic, timeout=60)
    check_delivery(rows, followers, senders.values())
    # a sender whose node went away may not know what became of its last call (in doubt); every
    # refusal is a documented one
    refusals = check_refusals(senders.values(), in_doubt_allowed=True)
    resumed = [f for f, n in zip(followers, nodes) if n.name in RESTARTS]
    assert all(f.reconnects >= 1 for f in resumed), "the followers of the restarted nodes did not reconnect"
    for f in followers:
        await f.close()
    figures = {"stored": len(rows), "accepted": sum(len(s.accepted) for s in senders.values()),
               "in_doubt": sum(1 for s in senders.values() for o in s.outcomes if o.in_doubt),
               "refusals": sum(refusals.values()), "links_back_s": round(links_back_after, 2),
               "down_and_back_s": round(restarted - stopped, 1),
               "reconnects": sum(f.reconnects for f in followers), "gap_fills": sum(f.gap_fills for f in followers)}
    for k, v in figures.items():
        record_property(k, v)
    print(f"\n5-node mesh: {figures}")
