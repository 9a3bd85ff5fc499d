"""A node whose SQLite file another process locks for writing: senders get
deptcast.error.unavailable within the store deadline (no hang, no internals) on every
interface, history keeps answering, and sends work again by themselves when the lock goes.
One log line each way."""

import sqlite3
import time

import pytest
import pytest_twisted

from tests.support.legacy import connect_legacy, post_send
from tests.support.nodes import Node, token
from tests.support.wamp import call_error, connect, wait_for

TIMEOUT = 1.0


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    n = Node(tmp_path_factory.mktemp("outage"), name="outage", env={"DEPTCAST_STORE_TIMEOUT": str(TIMEOUT)})
    n.start()
    yield n
    n.stop()


@pytest_twisted.inlineCallbacks
def test_a_locked_store_answers_unavailable_on_every_interface_and_recovers(node):
    ann = yield connect(node.url, token("ann", "lock"))
    yield ann.listen("deptcast.dept.lock")
    legacy = yield connect_legacy(node.port, "lock_leo", token("leo", "lock"))
    yield ann.call("deptcast.send", "lock", "before")

    locker = sqlite3.connect(str(node.node_dir / "deptcast.sqlite3"), isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        started = time.monotonic()
        e = yield call_error(ann.call("deptcast.send", "lock", "while locked"))
        waited = time.monotonic() - started
        assert e.error == "deptcast.error.unavailable"
        assert "retry" in e.args[0] and "sqlite" not in e.args[0].lower() and "locked" not in e.args[0]
        assert e.kwargs.get("retry_after") == 2
        assert waited < TIMEOUT + 3  # answered near the deadline, not held for the lock's duration
        # reads go on: WAL mode, and history has its own connection and thread
        history = yield ann.call("deptcast.history")
        assert [m["message"] for m in history] == ["before"]
        status, headers, body = yield post_send(node.port, {"to": "lock", "message": "http"}, token("ann", "lock"))
        assert status == 503 and body["error"] == "deptcast.error.unavailable"
        legacy.send_json("lock", "legacy while locked")
        yield wait_for(lambda: legacy.errors(), what="the legacy error frame", timeout=TIMEOUT + 10)
        assert [err["error"] for err in legacy.errors()] == ["deptcast.error.unavailable"]
    finally:
        locker.execute("ROLLBACK")
        locker.close()

    # back by itself: the next send goes through, and nothing refused was delivered
    yield ann.call("deptcast.send", "lock", "after")
    yield wait_for(lambda: "after" in ann.messages("deptcast.dept.lock"))
    assert ann.messages("deptcast.dept.lock") == ["before", "after"]
    # the worker's log line reaches the file through the controller, a moment after the event
    yield wait_for(lambda: "deptcast store: writes available again" in node.log_since_start(), 10, "the log line")
    log = node.log_since_start()
    assert log.count("deptcast store: writes unavailable") == 1
    assert log.count("deptcast store: writes available again") == 1
    assert "deptcast store: reads unavailable" not in log
    for c in (ann, legacy):
        yield c.close()
