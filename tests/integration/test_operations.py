"""Operations on real single nodes: /health (healthy, store down and back), /metrics (counters
move when messages are sent, refused and delivered, on every interface), retention (old rows
go, a position older than what is kept is refused with deptcast.error.pruned), and the drain
on SIGTERM (clients are told to go elsewhere before the node stops)."""

import json
import signal
import sqlite3

import pytest
import pytest_twisted
from twisted.internet import reactor, task, threads

from components import upstream
from components.core import names
from tests.support.legacy import connect_legacy, http_request, post_send
from tests.support.metrics import sample
from tests.support.nodes import Node, token
from tests.support.wamp import call_error, connect, wait_for


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    n = Node(tmp_path_factory.mktemp("ops"), name="ops", env={"DEPTCAST_STORE_TIMEOUT": "1"})
    n.start()
    yield n
    n.stop()


@pytest_twisted.inlineCallbacks
def get(node, path):
    status, headers, body = yield http_request("GET", f"http://127.0.0.1:{node.port}{path}")
    return status, headers, body


@pytest_twisted.inlineCallbacks
def health(node, path="/health"):
    status, headers, body = yield get(node, path)
    return status, json.loads(body)


@pytest_twisted.inlineCallbacks
def scrape(node):
    status, headers, body = yield get(node, "/metrics")
    assert status == 200 and headers.getRawHeaders(b"content-type")[0].startswith(b"text/plain; version=0.0.4")
    return body.decode()


@pytest_twisted.inlineCallbacks
def test_health_of_a_serving_node(node):
    status, headers, raw = yield get(node, "/health")
    assert status == 200
    assert headers.getRawHeaders(b"cache-control") == [b"no-store"]
    body = json.loads(raw)
    assert body["status"] == "ok" and body["serving"] is True and body["problems"] == []
    assert body["components"] == {"root": True, "auth": True, "sessions": True, "api": True, "presence": True,
                                  "bridge": True, "ops": True}
    assert body["patches"] == [{"name": name, "state": "applied"} for name in upstream.PATCHES]
    assert body["store"]["kind"] == "sqlite" and body["store"]["ready"] is True and body["store"]["writes"] == "up"
    assert body["links"] == {} and body["node"] == "ops"
    status, serving = yield health(node, "/health/serving")
    assert status == 200 and serving["instance"] == body["instance"]
    status, _, _ = yield get(node, "/health/nothing")
    assert status == 404
    # polled every 100 ms for 2 s: every answer 200, the node's state kept (no store round trip)
    statuses = []
    for _ in range(20):
        s, _ = yield health(node)
        statuses.append(s)
        yield task.deferLater(reactor, 0.1, lambda: None)
    assert statuses == [200] * 20


@pytest_twisted.inlineCallbacks
def test_health_says_when_the_store_is_down_and_when_it_is_back(node):
    locker = sqlite3.connect(str(node.node_dir / "deptcast.sqlite3"), isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # another process holds the write lock: writes fail
    try:
        deadline = reactor.seconds() + 20  # within one store probe (5 s) and its deadline (1 s)
        while True:
            status, body = yield health(node)
            if status == 503 or reactor.seconds() > deadline:
                break
            yield task.deferLater(reactor, 0.2, lambda: None)
        assert status == 503, body
        assert body["status"] == "down" and body["serving"] is False
        assert body["problems"] == ["store writes are failing"]
        assert body["store"]["writes"] == "down" and body["store"]["reads"] == "up"
        status, _ = yield health(node, "/health/serving")
        assert status == 503
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    deadline = reactor.seconds() + 20
    while True:
        status, body = yield health(node)
        if status == 200 or reactor.seconds() > deadline:
            break
        yield task.deferLater(reactor, 0.2, lambda: None)
    assert status == 200 and body["store"]["writes"] == "up", body


@pytest_twisted.inlineCallbacks
def test_metrics_move_when_messages_are_sent_refused_and_delivered(node):
    before = yield scrape(node)
    ann = yield connect(node.url, token("ann", "mx"))
    yield ann.listen(names.dept_topic("mx"))
    yield ann.listen(names.TOPIC_ALL)
    page = yield connect_legacy(node.port, "mx_leo", token("leo", "mx"))
    during = yield scrape(node)
    assert sample(during, "deptcast_sessions", kind="wamp") == sample(before, "deptcast_sessions", kind="wamp") + 1
    assert sample(during, "deptcast_sessions", kind="legacy") == sample(before, "deptcast_sessions", kind="legacy") + 1
    assert (sample(during, "deptcast_subscribers", kind="dept")
            == sample(before, "deptcast_subscribers", kind="dept") + 1)
    assert sample(during, "deptcast_users_online") == sample(before, "deptcast_users_online") + 1

    yield ann.call("deptcast.send", "mx", "one")                     # accepted via WAMP
    e = yield call_error(ann.call("deptcast.send", "other", "no"))   # refused: another department
    assert e.error == "deptcast.error.not_authorized"
    page.send_json("mx", "two")                                       # accepted via the legacy socket
    page.send_text("{not json")                                       # refused before the service
    status, _, _ = yield post_send(node.port, {"to": "mx", "message": "three"}, token("ann", "mx"))
    assert status == 200
    status, _, _ = yield post_send(node.port, {"to": "mx", "message": "x"}, "not-a-token")
    assert status == 401
    yield ann.call("deptcast.history")
    yield wait_for(lambda: ann.messages(names.dept_topic("mx")) == ["one", "two", "three"], 10, "the three events")
    yield wait_for(lambda: len(page.texts) == 4, 10, "the page's three messages and one error")
    after = yield scrape(node)

    def moved(name, **labels):
        return sample(after, name, **labels) - sample(before, name, **labels)
    assert moved("deptcast_sends_accepted_total", interface="wamp") == 1
    assert moved("deptcast_sends_accepted_total", interface="legacy") == 1
    assert moved("deptcast_sends_accepted_total", interface="http") == 1
    assert moved("deptcast_sends_refused_total", interface="wamp", reason="not_authorized") == 1
    assert moved("deptcast_sends_refused_total", interface="legacy", reason="invalid_frame") == 1
    assert moved("deptcast_sends_refused_total", interface="http", reason="invalid_token") == 1
    assert moved("deptcast_events_published_total", kind="dept") == 3
    assert moved("deptcast_legacy_deliveries_total") == 3
    # each event went to ann and to the bridge session of the legacy sockets, at least
    assert moved("deptcast_router_events_sent_total") >= 6
    assert moved("deptcast_history_seconds_count", outcome="ok") == 1
    assert moved("deptcast_store_operation_seconds_count", operation="append_many") == 3  # one at a time
    assert moved("deptcast_http_responses_total", path="/api/send", status="200") == 1
    assert moved("deptcast_http_responses_total", path="/api/send", status="401") == 1
    assert sample(after, "deptcast_up") == 1 and sample(after, "deptcast_healthy") == 1
    assert sample(after, "deptcast_process_resident_memory_bytes", process="router") > 10e6
    assert sample(after, "deptcast_process_cpu_seconds_total", process="controller") > 0
    yield ann.close()
    yield page.close() if hasattr(page, "close") else page.sendClose()


@pytest.fixture
def retention_node(tmp_path):
    n = Node(tmp_path / "retention", name="retention",
             env={"DEPTCAST_RETENTION_MESSAGES": "3", "DEPTCAST_RETENTION_INTERVAL": "0.5"})
    n.start()
    yield n
    n.stop()


@pytest_twisted.inlineCallbacks
def test_retention_removes_old_messages_and_refuses_a_position_past_them(retention_node):
    node = retention_node
    ann = yield connect(node.url, token("ann", "ret"))
    first = yield ann.call("deptcast.send", "ret", "m0")
    for i in range(1, 8):
        yield ann.call("deptcast.send", "ret", f"m{i}")
        yield task.deferLater(reactor, 0.06, lambda: None)  # under the rate limit

    def kept():
        db = sqlite3.connect(str(node.node_dir / "deptcast.sqlite3"))
        try:
            return [r[0] for r in db.execute("SELECT message FROM messages ORDER BY id")]
        finally:
            db.close()
    yield wait_for(lambda: kept() == ["m5", "m6", "m7"], 15, "retention to keep the newest 3")
    topic = names.dept_topic("ret")
    # a client that has seq 5 lost nothing; one at seq 2 (or after m0's id) is told, not given a hole
    fine = yield ann.call("deptcast.history", positions={topic: 5})
    assert [e["message"] for e in fine] == ["m5", "m6", "m7"]
    e = yield call_error(ann.call("deptcast.history", positions={topic: 2}))
    assert e.error == "deptcast.error.pruned"
    assert "kept from seq 6" in e.args[0] and "latest" in e.args[0]
    e = yield call_error(ann.call("deptcast.history", after=first["id"]))
    assert e.error == "deptcast.error.pruned"
    newest = yield ann.call("deptcast.history", latest=True, limit=10)
    assert [m["message"] for m in newest] == ["m5", "m6", "m7"]
    text = yield scrape(node)
    assert sample(text, "deptcast_retention_pruned_messages_total", rule="count") == 5
    assert sample(text, "deptcast_history_seconds_count", outcome="refused") == 2
    assert "deptcast retention: removed " in node.log_since_start()  # (in one round or several)
    yield ann.close()


@pytest_twisted.inlineCallbacks
def test_sigterm_drains_the_clients_before_the_node_stops(tmp_path):
    node = Node(tmp_path / "drain", name="drain")
    yield threads.deferToThread(node.start)
    try:
        ann = yield connect(node.url, token("ann", "dr"))
        pat = yield connect(node.url, token("pat", "admin", "publisher"))
        page = yield connect_legacy(node.port, "dr_leo", token("leo", "dr"))
        status, body = yield health(node)
        assert status == 200 and body["sessions"] == {"wamp": 2, "legacy": 1}
        signalled = reactor.seconds()
        node.proc.send_signal(signal.SIGTERM)
        yield ann.closed
        yield pat.closed
        yield page.closed
        told_within = reactor.seconds() - signalled
        # a WAMP goodbye that says "go elsewhere now", and a WebSocket 1001 Going Away
        for client in (ann, pat):
            assert client.left_with.reason == "wamp.close.system_shutdown"
        assert page.close_info[1] == 1001 and "reconnect" in page.close_info[2]
        yield threads.deferToThread(node.proc.wait, 30)  # (Crossbar exits 1 after a SIGTERM, drain or not)
        log = node.log_since_start()
        assert "Traceback" not in log
        assert "asked 2 WAMP sessions and 1 legacy sockets to reconnect elsewhere; 0 still connected" in log
        # the drain came before Crossbar's own shutdown of the components
        assert log.index("asked 2 WAMP sessions") < log.index("Shutdown of worker requested")
        print(f"\nclients told to go {told_within:.2f} s after SIGTERM")
        assert told_within < 5
    finally:
        yield threads.deferToThread(node.stop)
