"""One node per core on one host: ``deptcast cluster init --local 2`` run as a user runs it, both
nodes started from the generated directories, the real nginx from the generated nginx.conf, the
machine's PostgreSQL behind. Clients through nginx land on both nodes, and a message sent on
either node reaches every subscriber on both nodes exactly once.
"""

import subprocess
import sys
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from components.core import names
from tests.support.cluster import Cluster, wait_links_carry
from tests.support.nodes import free_port_run, token
from tests.support.pg import pg_schema
from tests.support.wamp import connect, wait_for

DEPTCAST = str(Path(sys.executable).with_name("deptcast"))
NODES = 2
SUBSCRIBERS = 6
SENDS_PER_NODE = 5


@pytest.fixture(scope="module")
def local_cluster(tmp_path_factory):
    out = tmp_path_factory.mktemp("percore") / "cluster"
    # the nodes take NODES web ports from --base-port, then NODES link ports; nginx the port after
    base = free_port_run(2 * NODES + 1)
    lb_port = base + 2 * NODES
    with pg_schema("deptcast_percore") as db:
        done = subprocess.run([DEPTCAST, "cluster", "init", "--local", str(NODES), "--base-port", str(base),
                               "--db", db, "--out", str(out), "--lb-listen", f"127.0.0.1:{lb_port}"],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert f"wrote a cluster of {NODES} nodes" in done.stdout
        c = Cluster.generated(out, db, lb_port)
        assert [(s.name, s.host, s.port) for s in c.layout.nodes] == [
            (f"n{i + 1}", "127.0.0.1", base + i) for i in range(NODES)]
        c.start()
        print(f"\n{NODES} local nodes started in {c.start_seconds:.1f} s")
        try:
            yield c
        finally:
            c.stop()


@pytest_twisted.inlineCallbacks
def test_clients_through_nginx_reach_every_subscriber_on_both_nodes_once(local_cluster):
    cluster = local_cluster
    dept = "percore"
    users = [f"u{i}" for i in range(SUBSCRIBERS)]
    clients = yield defer.gatherResults([connect(cluster.url, token(u, dept), timeout=30) for u in users],
                                        consumeErrors=True)
    pubs = {}
    try:
        per_node = {name: 0 for name in cluster.nodes}
        for c in clients:
            per_node[cluster.node_of(c)] += 1
        print(f"{SUBSCRIBERS} clients through nginx: {per_node}")
        assert all(count > 0 for count in per_node.values()), per_node
        for c in clients:
            yield c.listen(names.dept_topic(dept))
        yield wait_links_carry(cluster, [names.dept_topic(dept)])

        # a publisher on each node, straight to its port: every message is sent on a known node
        for name, node in cluster.nodes.items():
            pubs[name] = yield connect(node.url, token(f"pub-{name}", "ops", "publisher"))
        sent = []
        for via, pub in sorted(pubs.items()):
            for i in range(SENDS_PER_NODE):
                env = yield pub.call(names.PROC_SEND, dept, f"{i} via {via}")
                sent.append(env["id"])

        def ids(c):
            return [e["id"] for e in c.events[names.dept_topic(dept)]]
        yield wait_for(lambda: all(set(sent) <= set(ids(c)) for c in clients), 20,
                       "every subscriber to receive every message")
        yield task.deferLater(reactor, 0.5, lambda: None)  # room for a late duplicate to show
        for c, user in zip(clients, users):
            # every message exactly once, whichever node it was sent on and the subscriber is on
            assert sorted(ids(c)) == sorted(sent), (user, cluster.node_of(c))
    finally:
        yield defer.gatherResults([c.close() for c in clients + list(pubs.values())], consumeErrors=True)


def test_cluster_status_sees_both_local_nodes(local_cluster):
    done = subprocess.run([DEPTCAST, "cluster", "status", "--cluster", str(local_cluster.layout.out)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[:3] for line in lines] == [
        [s.name, s.address, "ok"] for s in local_cluster.layout.nodes]
