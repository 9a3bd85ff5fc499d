"""Safe retries and batches on a real node (SQLite store), over WAMP and HTTP: a key answers
the first envelope and nothing is published again, concurrent retries publish once, a batch
answers per item, and ``unavailable`` means "not stored" while another process locks the
store. The node is shared by the module (each test uses departments of its own); its store
deadline is short (:data:`STORE_TIMEOUT`) to keep the lock test short.
"""

import json
import os
import subprocess
import sys
from typing import Any, Dict, List

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from twisted.internet import defer, reactor, task

from components.core.errors import INVALID_FRAME, NOT_AUTHORIZED, TOO_LARGE, UNAVAILABLE
from components.core.names import PROC_HISTORY, PROC_SEND, PROC_SEND_BATCH, SEND_BATCH_MAX
from tests.support.legacy import http_request, post_send
from tests.support.nodes import Node, token
from tests.support.wamp import connect, wait_for

STORE_TIMEOUT = 1.5


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    n = Node(tmp_path_factory.mktemp("keys"), name="keys", env={"DEPTCAST_STORE_TIMEOUT": str(STORE_TIMEOUT)})
    n.start()
    yield n
    n.stop()


def _dept(prefix: str) -> str:
    return f"{prefix}-{os.urandom(3).hex()}"


def _sleep(seconds: float) -> defer.Deferred:
    return task.deferLater(reactor, seconds, lambda: None)


@defer.inlineCallbacks
def _listener(node, dept: str):
    client = yield connect(node.url, token("watch", dept))
    yield client.listen(f"deptcast.dept.{dept}")
    return client


@defer.inlineCallbacks
def _outcome(d: defer.Deferred):
    try:
        return (yield d)
    except ApplicationError as e:
        return e.error


def post_json(port: int, path: str, body: Any, tok: str, headers: Dict[str, str] = None) -> defer.Deferred:
    h = {"Content-Type": "application/json", "Authorization": f"Bearer {tok}", **(headers or {})}
    d = http_request("POST", f"http://127.0.0.1:{port}{path}", json.dumps(body).encode(), h)
    return d.addCallback(lambda r: (r[0], json.loads(r[2])))


@pytest_twisted.inlineCallbacks
def test_concurrent_retries_with_one_key_publish_once(node):
    dept = _dept("race")
    watch = yield _listener(node, dept)
    senders = yield defer.gatherResults([connect(node.url, token("pat", dept, "publisher")) for _ in range(3)])
    try:
        # three sessions of one sender (as after a reconnect), ten calls each with the same key
        calls = [s.call(PROC_SEND, dept, "one notice", key="the-key") for s in senders for _ in range(10)]
        answers = yield defer.gatherResults(calls)
        assert all(a == answers[0] for a in answers)
        yield wait_for(lambda: watch.events[f"deptcast.dept.{dept}"], what="the notice")
        # a marker after it: once it arrived, everything before it has too
        marker = yield senders[0].call(PROC_SEND, dept, "marker")
        yield wait_for(lambda: len(watch.events[f"deptcast.dept.{dept}"]) >= 2, what="the marker")
        assert watch.events[f"deptcast.dept.{dept}"] == [answers[0], marker]
        refused = yield _outcome(senders[0].call(PROC_SEND, dept, "other text", key="the-key"))
        assert refused == INVALID_FRAME
        bad = yield _outcome(senders[0].call(PROC_SEND, dept, "x", key="not a key!"))
        assert bad == INVALID_FRAME
    finally:
        for s in senders:
            yield s.close()
        yield watch.close()


@pytest_twisted.inlineCallbacks
def test_a_member_past_its_rate_is_still_answered_its_stored_envelope(node):
    """A retry that returns a stored envelope costs no rate: a member that used up its burst
    (50) gets its keyed notice back, and a new one refused."""
    dept = _dept("rate")
    member = yield connect(node.url, token("mia", dept))
    try:
        first = yield member.call(PROC_SEND, dept, "kept", key="kept-1")
        outcomes = yield defer.gatherResults([_outcome(member.call(PROC_SEND, dept, f"n{i}")) for i in range(60)])
        assert "deptcast.error.rate_limited" in outcomes
        again = yield member.call(PROC_SEND, dept, "kept", key="kept-1")
        assert again == first
    finally:
        yield member.close()


@pytest_twisted.inlineCallbacks
def test_send_batch_answers_per_item_in_order_and_refuses_over_a_thousand(node):
    dept = _dept("batch")
    watch = yield _listener(node, dept)
    member = yield connect(node.url, token("mo", dept))
    try:
        items = [{"to": dept, "message": f"m{i}", "key": f"b-{i}"} for i in range(5)]
        items.insert(1, {"to": "other-dept", "message": "not mine"})          # not_authorized
        items.insert(2, {"to": dept, "message": "x" * 70000})                  # too_large
        items.insert(3, {"to": dept})                                          # invalid_frame
        items.insert(4, "not an object")                                       # invalid_frame
        items.insert(5, {"to": dept, "message": "m0", "key": "b-0"})           # a repeat: the first envelope
        items.insert(6, {"to": dept, "message": "changed", "key": "b-0"})      # the key for another notice
        results = yield member.call(PROC_SEND_BATCH, items)
        assert len(results) == len(items)
        errors = [r.get("error") for r in results]
        assert errors == [None, NOT_AUTHORIZED, TOO_LARGE, INVALID_FRAME, INVALID_FRAME, None, INVALID_FRAME,
                          None, None, None, None]
        assert all(isinstance(r["detail"], str) for r in results if "error" in r)
        sent = [r for r in results if "error" not in r]
        assert sent[1] == sent[0]  # the repeat
        assert [r["message"] for r in sent] == ["m0", "m0", "m1", "m2", "m3", "m4"]
        assert [r["seq"] for r in sent] == [1, 1, 2, 3, 4, 5]
        yield wait_for(lambda: len(watch.events[f"deptcast.dept.{dept}"]) >= 5, what="the batch")
        # the whole batch again: every key is known, nothing is published twice
        again = yield member.call(PROC_SEND_BATCH, items)
        assert [r for r in again if "error" not in r] == sent
        marker = yield member.call(PROC_SEND, dept, "marker")
        yield wait_for(lambda: len(watch.events[f"deptcast.dept.{dept}"]) >= 6, what="the marker")
        assert watch.events[f"deptcast.dept.{dept}"] == [sent[0]] + sent[2:] + [marker]
        too_many = [{"to": dept, "message": "m"}] * (SEND_BATCH_MAX + 1)
        assert (yield _outcome(member.call(PROC_SEND_BATCH, too_many))) == INVALID_FRAME
        assert (yield _outcome(member.call(PROC_SEND_BATCH, "items"))) == INVALID_FRAME
        assert (yield member.call(PROC_SEND_BATCH, [])) == []
    finally:
        yield member.close()
        yield watch.close()


@pytest_twisted.inlineCallbacks
def test_http_honours_idempotency_key_and_sends_batches(node):
    dept = _dept("http")
    watch = yield _listener(node, dept)
    pub = token("backend", "ops", "publisher")
    try:
        headers = {"Idempotency-Key": "order-17"}
        first = yield post_json(node.port, "/api/send", {"to": dept, "message": "order 17"}, pub, headers)
        again = yield post_json(node.port, "/api/send", {"to": dept, "message": "order 17"}, pub, headers)
        assert first[0] == again[0] == 200 and first[1] == again[1]
        other = yield post_json(node.port, "/api/send", {"to": dept, "message": "order 18"}, pub, headers)
        assert other == (400, {"error": INVALID_FRAME, "detail": other[1]["detail"]})
        # the key is the sender's: WAMP with the same key gets the same envelope
        session = yield connect(node.url, pub)
        try:
            assert (yield session.call(PROC_SEND, dept, "order 17", key="order-17")) == first[1]
        finally:
            yield session.close()
        items = [{"to": dept, "message": f"h{i}", "key": f"h-{i}"} for i in range(3)] + [{"to": dept}]
        status, body = yield post_json(node.port, "/api/send_batch", {"items": items}, pub)
        assert status == 200 and [r.get("error") for r in body["results"]] == [None, None, None, INVALID_FRAME]
        assert [r["seq"] for r in body["results"][:3]] == [2, 3, 4]
        status, body2 = yield post_json(node.port, "/api/send_batch", {"items": items}, pub)
        assert status == 200 and body2 == body
        status, refused = yield post_json(node.port, "/api/send_batch",
                                          {"items": [{"to": dept, "message": "m"}] * (SEND_BATCH_MAX + 1)}, pub)
        assert status == 400 and refused["error"] == INVALID_FRAME
        status, refused = yield post_json(node.port, "/api/send_batch", [{"to": dept, "message": "m"}], pub)
        assert status == 400 and refused["error"] == INVALID_FRAME
        yield wait_for(lambda: len(watch.events[f"deptcast.dept.{dept}"]) >= 4, what="the notices")
        marker = yield post_send(node.port, {"to": dept, "message": "marker"}, pub)
        yield wait_for(lambda: len(watch.events[f"deptcast.dept.{dept}"]) >= 5, what="the marker")
        assert watch.events[f"deptcast.dept.{dept}"] == [first[1]] + body["results"][:3] + [marker[2]]
    finally:
        yield watch.close()


#: another process that takes SQLite's write lock, says so, and holds it
LOCKER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("ROLLBACK")
"""


@pytest_twisted.inlineCallbacks
def test_unavailable_while_another_process_locks_the_store_means_not_stored(node):
    """Ten keyed sends while another process holds SQLite's write lock for several deadlines:
    what was answered ``unavailable`` is not stored (not even once the lock goes), and a retry
    of each with its key stores it exactly once."""
    dept = _dept("lock")
    topic = f"deptcast.dept.{dept}"
    watch = yield _listener(node, dept)
    sender = yield connect(node.url, token("pat", dept, "publisher"))
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(node.node_dir / "deptcast.sqlite3"),
                               str(STORE_TIMEOUT * 4)], stdout=subprocess.PIPE, text=True)
    try:
        assert locker.stdout.readline().strip() == "locked"
        outcomes: List[Any] = []
        for i in range(10):  # one after another and in parallel pairs, while the lock is held
            pair = [_outcome(sender.call(PROC_SEND, dept, f"n{i}.{j}", key=f"lock-{i}-{j}")) for j in range(2)]
            outcomes += (yield defer.gatherResults(pair))
            if locker.poll() is not None:
                break
        while locker.poll() is None:
            yield _sleep(0.1)
        yield _sleep(STORE_TIMEOUT * 2)  # anything still held by the store has ended by now
        refused = [n for n, o in enumerate(outcomes) if o == UNAVAILABLE]
        accepted = [o for o in outcomes if isinstance(o, dict)]
        assert refused and len(refused) + len(accepted) == len(outcomes)
        reader = yield connect(node.url, token("reader", dept))
        try:
            stored = yield reader.call(PROC_HISTORY, positions={topic: 0}, limit=200)
        finally:
            yield reader.close()
        assert [e["id"] for e in stored] == [e["id"] for e in accepted]
        # the retries: each refused notice is stored once now
        retried = []
        for n in refused:
            i, j = divmod(n, 2)
            retried.append((yield sender.call(PROC_SEND, dept, f"n{i}.{j}", key=f"lock-{i}-{j}")))
        for n in refused:  # and a second retry answers the same envelopes
            i, j = divmod(n, 2)
            assert (yield sender.call(PROC_SEND, dept, f"n{i}.{j}", key=f"lock-{i}-{j}")) == retried[refused.index(n)]
        everything = accepted + retried
        yield wait_for(lambda: len(watch.events[topic]) >= len(everything), 15, "every notice")
        yield _sleep(0.5)
        assert watch.events[topic] == everything
        assert [e["seq"] for e in everything] == list(range(1, len(everything) + 1))
    finally:
        locker.kill()
        locker.wait()
        yield sender.close()
        yield watch.close()
