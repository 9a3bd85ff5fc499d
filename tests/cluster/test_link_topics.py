"""What each node's links pull, on a real 3-node cluster: a link pulls from its peer exactly
the topics its own node's sessions subscribe (clients, the node's components), never a topic
that only another node's link holds there.

Upstream's link followed every subscription on its node, the other links' included: every node
pulled every topic subscribed anywhere, two nodes' links kept a topic subscribed on each other
after its last client left, and a subscription made and dropped at once (the readiness probe
does this) made two links re-create it on each other, for seconds to minutes
(``subscription already gone`` / ``has no 'sub'`` in the node log, each line a round trip).

Asked of each node's meta API through its inspector socket.
"""

import time
from typing import Dict, List, Tuple

import pytest_twisted

from components.core import names
from components.core.names import RLINK_ROLE
from tests.chaos.load import _sleep
from tests.support.cluster import Cluster, _subscribers, wait_links_carry
from tests.support.nodes import token
from tests.support.wamp import connect

#: seconds within which a dropped subscription must be gone on every node
GONE_WITHIN = 30.0
#: seconds it must then stay gone, and a topic stay unpulled (several link round trips)
WATCH = 2.0
#: subscribe-unsubscribe rounds of one client
BLINKS = 5
CHURN = "subscription already gone:"


OWN = ("own", "")


async def holders(inspectors, topic: str) -> Dict[str, List[Tuple[str, str]]]:
    """Node name to the sessions subscribed to ``topic`` there: ``(RLINK_ROLE, peer)`` for a
    peer's link, :data:`OWN` for any other session."""
    out = {}
    for name, inspector in inspectors.items():
        out[name] = sorted(s if s[0] == RLINK_ROLE else OWN for s in await _subscribers(inspector, topic))
    return out


async def wait_gone(inspectors, topic: str) -> None:
    deadline = time.monotonic() + GONE_WITHIN
    while True:
        now = await holders(inspectors, topic)
        if not any(now.values()):
            return
        assert time.monotonic() < deadline, f"{topic} still subscribed after {GONE_WITHIN} s: {now}"
        await _sleep(0.1)


async def stays(inspectors, topic: str, want: Dict[str, List[Tuple[str, str]]]) -> None:
    """The subscribers of ``topic`` are ``want`` on every node, and stay so for :data:`WATCH` s."""
    until = time.monotonic() + WATCH
    while time.monotonic() < until:
        assert await holders(inspectors, topic) == want
        await _sleep(0.1)


def churn(cluster: Cluster, topic: str) -> int:
    """How many subscribes of ``topic`` on a peer the node logs show returning after the
    subscription they followed was gone (each a link round trip)."""
    return sum(node.log_since_start().count(f"{CHURN} {topic}") for node in cluster.nodes.values())


@pytest_twisted.ensureDeferred
async def test_a_topic_subscribed_on_one_node_is_pulled_by_that_node_only(cluster, inspectors):
    topic = names.dept_topic("only-n1")
    client = await connect(cluster.nodes["n1"].url, token("only-n1", "only-n1"))
    try:
        await client.listen(topic)
        await wait_links_carry(cluster, [topic])
        # n1's links pulled it from n2 and n3; neither n2 nor n3 pulls it from anyone
        await stays(inspectors, topic, {"n1": [OWN],
                                        "n2": [(RLINK_ROLE, "n1")], "n3": [(RLINK_ROLE, "n1")]})
    finally:
        await client.close()
    await wait_gone(inspectors, topic)


@pytest_twisted.ensureDeferred
async def test_after_the_last_client_leaves_no_link_keeps_the_topic(cluster, inspectors):
    topic = names.dept_topic("left")
    clients = [await connect(cluster.nodes[n].url, token(f"left-{n}", "left")) for n in ("n1", "n2")]
    try:
        for client in clients:
            await client.listen(topic)
        await wait_links_carry(cluster, [topic])
        await stays(inspectors, topic, {
            "n1": [(RLINK_ROLE, "n2"), OWN],
            "n2": [(RLINK_ROLE, "n1"), OWN],
            "n3": [(RLINK_ROLE, "n1"), (RLINK_ROLE, "n2")]})
    finally:
        for client in clients:
            await client.close()
    await wait_gone(inspectors, topic)
    await stays(inspectors, topic, {"n1": [], "n2": [], "n3": []})


@pytest_twisted.ensureDeferred
async def test_a_subscription_made_and_dropped_at_once_is_gone_everywhere_and_stays_gone(cluster, inspectors):
    topic, barrier = names.dept_topic("blink"), names.dept_topic("blink-barrier")
    client = await connect(cluster.nodes["n1"].url, token("blink", "blink"))
    other = await connect(cluster.nodes["n1"].url, token("barrier", "blink-barrier"))
    try:
        for _ in range(BLINKS):
            subscription = await client.subscribe(lambda *a, **kw: None, topic)
            await subscription.unsubscribe()
        # a subscription made on n1 after those: once the links carry it, they have handled
        # n1's meta events of the blinks (in order)
        await other.listen(barrier)
        await wait_links_carry(cluster, [barrier])
        await wait_gone(inspectors, topic)
        await stays(inspectors, topic, {"n1": [], "n2": [], "n3": []})
        # at most one round trip per blink and link of n1 (forwarded, then dropped at once)
        assert churn(cluster, topic) <= BLINKS * 2
    finally:
        await client.close()
        await other.close()
