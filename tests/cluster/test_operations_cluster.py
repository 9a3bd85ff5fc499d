"""Operations on a real 3-node cluster behind nginx, on the machine's PostgreSQL: /health with a
peer down and back, ``deptcast cluster status``, the internal paths kept from the public, and
``deptcast cluster restart`` under load with long-lived subscribers: nothing lost, nothing
twice, no client waiting longer than stated.

The nodes run under ``deptcast run`` (so ``kill -HUP`` of its pid restarts one, as
``systemctl restart`` would on a host).
"""

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task, threads

from components.client.tx import Client
from components.core import names
from components.ops.cluster import init_cluster
from components.ops.nginx import nginx_config
from components.ops.topology import NodeSpec
from tests.support.cluster import NGINX, Sender, Subscriber, running_cluster, wait_links_carry
from tests.support.nodes import token, wait_until
from tests.support.wamp import connect, wait_for

DEPTCAST = str(Path(sys.executable).with_name("deptcast"))
#: the bounds a rolling restart under load is held to (measured: the longest send 0.2-1.0 s, the
#: longest delivery 0.4-0.7 s, in 4 runs of this test)
MAX_DELIVERY_SECONDS = 5.0    # from a send's start until every subscriber has the message
MAX_SEND_SECONDS = 5.0        # from a send's start until it is accepted (held, retried or not)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    # deptcast run: SIGHUP restarts a node
    with running_cluster(tmp_path_factory.mktemp("opscluster"), "deptcast_opscl", supervised=True) as c:
        yield c


def node_of(cluster, client) -> str:
    """The node a client's session is on: its node id names the Crossbar controller's pid,
    which a node under ``deptcast run`` writes to ``node.pid``."""
    node_id = client.details.authextra.get("x_cb_node", "")
    for name, node in cluster.nodes.items():
        pid = json.loads((node.node_dir / "node.pid").read_text())["pid"]
        if node_id.endswith(f"-{pid}"):
            return name
    raise LookupError(node_id)


def status(cluster):
    done = subprocess.run([DEPTCAST, "cluster", "status", "--cluster", str(cluster.layout.out)],
                          capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout.splitlines()


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_status_of_a_healthy_cluster(cluster):
    wait_until(lambda: all(n.is_ready("healthy") for n in cluster.nodes.values()), 60, "every node healthy")
    code, lines = status(cluster)
    print("\n" + "\n".join(lines))
    assert code == 0 and len(lines) == 3
    for name, line in zip(("n1", "n2", "n3"), lines):
        peers = [p for p in ("n1", "n2", "n3") if p != name]
        assert line.startswith(f"{name} ") and " ok " in line and " serving " in line
        assert f"links: {peers[0]} up; {peers[1]} up" in line
        assert "store: postgresql writes up" in line and "problems" not in line


def test_the_balancer_keeps_health_and_metrics_internal(cluster):
    lb = f"http://127.0.0.1:{cluster.lb_port}"
    assert [http_status(lb + p) for p in ("/health", "/health/serving", "/metrics")] == [404, 404, 404]
    node = cluster.nodes["n1"]
    assert http_status(f"http://127.0.0.1:{node.port}/metrics") == 200


@pytest.mark.skipif(not Path(NGINX).exists(), reason="nginx is not installed")
def test_expose_internal_proxies_them_and_nginx_accepts_both(tmp_path):
    specs = [NodeSpec("n1", "127.0.0.1", 9001), NodeSpec("n2", "127.0.0.1", 9002)]
    hidden, shown = nginx_config(specs, "127.0.0.1:9000"), nginx_config(specs, "127.0.0.1:9000", expose_internal=True)
    assert "location = /metrics {\n            return 404;" in hidden
    assert "location = /metrics {\n            proxy_pass http://deptcast;" in shown
    for expose in (False, True):
        layout = init_cluster(specs, "postgresql://u@h/db", tmp_path / str(expose), lb_listen="127.0.0.1:18998",
                              expose_internal=expose)
        assert json.loads((layout.out / "cluster.json").read_text()) == {
            "nodes": [{"name": "n1", "host": "127.0.0.1", "port": 9001},
                      {"name": "n2", "host": "127.0.0.1", "port": 9002}]}
        checked = subprocess.run([NGINX, "-t", "-p", str(layout.out / "nginx"), "-c", str(layout.nginx_conf),
                                  "-e", "logs/error.log"], capture_output=True, text=True, timeout=30)
        assert checked.returncode == 0, checked.stderr


def test_a_peer_down_shows_in_health_and_status_until_it_is_back(cluster):
    victim = cluster.nodes["n3"]
    victim.stop()
    try:
        def n1_says_n3_down():
            h = cluster.nodes["n1"].health()
            return h is not None and h.status == 503 and h
        h = wait_until(n1_says_n3_down, 30, "n1 to report its links with n3 down")
        assert h.body["status"] == "degraded" and h.body["serving"] is True
        assert h.body["links"]["n3"] == {"in": "down", "out": "down"}
        assert h.body["links"]["n2"] == {"in": "up", "out": "up"}
        assert "link from n3 down: n3's subscribers miss messages sent via this node" in h.body["problems"]
        serving = cluster.nodes["n1"].health(serving=True)
        assert serving.status == 200  # a balancer keeps n1 in rotation
        code, lines = status(cluster)
        print("\n" + "\n".join(lines))
        assert code == 1
        assert "degraded" in lines[0] and "n3 DOWN" in lines[0]
        assert lines[2].startswith("n3 ") and "unreachable" in lines[2]
    finally:
        victim.start(90.0)
    wait_until(lambda: all(n.is_ready("healthy") for n in cluster.nodes.values()), 60, "every node healthy again")
    code, lines = status(cluster)
    assert code == 0, lines


class TimedSubscriber(Subscriber):
    """A long-lived subscriber (the Python client) that notes when its application first had
    each message, and whether history brought it."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__(url, token)
        self.first_seen = {}
        self.client = Client(url, token, self._deliver)

    def _deliver(self, envelope) -> None:
        self.first_seen.setdefault(envelope["id"], time.time())
        self.received.append(envelope)

    def came_by(self, msg_id: str) -> str:
        return "history" if msg_id in self.client.stats.history_ids else "live"


@pytest_twisted.inlineCallbacks
def test_rolling_restart_under_load_loses_and_duplicates_nothing(cluster):
    yield threads.deferToThread(wait_until, lambda: all(n.is_ready("healthy") for n in cluster.nodes.values()),
                                60, "every node healthy")
    dept = f"roll-{int(time.time())}"
    subs = [TimedSubscriber(cluster.url, token(f"s{i}", dept)) for i in range(30)]
    yield defer.gatherResults([s.start() for s in subs], consumeErrors=True)
    first_nodes = [node_of(cluster, s.client) for s in subs]
    assert set(first_nodes) == {"n1", "n2", "n3"}
    yield wait_links_carry(cluster, [names.dept_topic(dept)])
    senders = [Sender(cluster.url, f"roller{i}", dept, pause=0.1) for i in range(3)]
    runs = [s.run() for s in senders]
    yield task.deferLater(reactor, 2.0, lambda: None)
    started = time.time()
    done = yield threads.deferToThread(
        subprocess.run, [DEPTCAST, "cluster", "restart", "--cluster", str(cluster.layout.out), "--timeout", "120",
                         "--command", "kill -HUP $(cat {dir}/deptcast-run.pid)"],
        capture_output=True, text=True, timeout=600)
    restart_seconds = time.time() - started
    yield task.deferLater(reactor, 2.0, lambda: None)
    for s in senders:
        s.running = False
    yield defer.gatherResults(runs, consumeErrors=True)
    print(f"\n{done.stdout}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert [line.split(" is back")[0] for line in done.stdout.splitlines() if " is back " in line] == \
        ["[1/3] n1", "[2/3] n2", "[3/3] n3"]

    # the last message is a marker: once every subscriber has it, nothing is in flight
    marker_client = yield connect(cluster.url, token("marker", "ops", "publisher"))
    marker = yield marker_client.call(names.PROC_SEND, dept, "marker")
    marker_at = time.time()
    yield marker_client.close()
    yield wait_for(lambda: all(marker["id"] in s.seen_ids for s in subs), 30, "every subscriber to have the marker")
    yield wait_for(lambda: not any(s.gaps() for s in subs), 30, "every subscriber to fill its seq gaps")
    yield task.deferLater(reactor, 0.5, lambda: None)

    accepted = {env["id"]: began for s in senders for (began, _), env in zip(s.latencies, s.accepted)}
    accepted[marker["id"]] = marker_at
    send_waits = [waited for s in senders for _, waited in s.latencies]
    delays = []
    for s in subs:
        got = [e["id"] for e in s.received]
        assert len(got) == len(set(got)), "a subscriber's application got a message twice"
        assert s.stats.live_repeats == 0, "the router delivered an event twice"
        missing = set(accepted) - s.seen_ids
        assert not missing, f"a subscriber missed {len(missing)} accepted messages"
        delays += [s.first_seen[i] - began for i, began in accepted.items()]
    late = [(s.first_seen[i] - began, s.came_by(i), began - started) for s in subs for i, began in accepted.items()
            if s.first_seen[i] - began > 2]
    by = {k: sum(1 for _, how, _ in late if how == k) for k in ("live", "history")}
    print(f"\ndeliveries later than 2 s: {len(late)} of {len(delays)} ({by}); "
          f"worst: {sorted(late, reverse=True)[:5]} (delay, how, sent at s after the restart began)")
    reconnected = [s for s in subs if s.reconnects]
    print(f"rolling restart took {restart_seconds:.1f} s; {len(accepted)} messages accepted, "
          f"{sum(s.failed for s in senders)} sends failed and retried; {len(reconnected)} of 30 subscribers "
          f"reconnected ({sum(s.reconnects for s in subs)} reconnects), "
          f"{sum(s.stats.delivered_from_history for s in subs)} messages caught up from history; "
          f"longest send {max(send_waits):.2f} s, longest delivery {max(delays):.2f} s "
          f"(p99 {sorted(delays)[int(len(delays) * 0.99)]:.2f} s)")
    # every subscriber was on a node that restarted: each reconnected (told to by the drain)
    assert len(reconnected) == 30
    assert max(send_waits) < MAX_SEND_SECONDS
    assert max(delays) < MAX_DELIVERY_SECONDS
    for node in cluster.nodes.values():
        assert "reconnect elsewhere" in node.log_text()
    yield defer.gatherResults([s.close() for s in subs] + [s.client.close() for s in senders if s.client],
                              consumeErrors=True)
