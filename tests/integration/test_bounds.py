"""What one connection may cost a real node, before and after it authenticates, and what it
sees: a small HELLO only, a bounded time to authenticate, one summarised line per kind of
client error, a bounded outgoing buffer, pings whatever the client sends, no internals in
events, nothing after GOODBYE.

One node for the module, with short bounds so that each test takes seconds: authentication
within :data:`AUTH_TIMEOUT` s, :data:`SEND_BUFFER` bytes of outgoing buffer, pings every
:data:`PING_MS` ms. Every test speaks WAMP by hand (:mod:`tests.support.rawwamp`): it sees the
frames exactly as the node sent them.
"""

import json
import re
import socket
import time

import pytest
import pytest_twisted

from components.core import names
from components.ops.nodeconfig import node_config
from tests.support import raw
from tests.support.metrics import metric
from tests.support.nodes import REPO, Node, free_port, token
from tests.support.rawwamp import CLOSE, ERROR, EVENT, GOODBYE, HELLO, RESULT, RawWamp
from tests.support.wamp import connect_inspector

AUTH_TIMEOUT = 2.5
SEND_BUFFER = 256 * 1024
PING_MS = 4000
IN_FLIGHT = 4
MAX_SUBSCRIPTIONS = 5
PRESENCE_BURST = 3
#: the issue's probe: a HELLO whose authextra holds 140,000 empty lists (420 KB, depth 2)
BIG_HELLO = json.dumps([HELLO, names.REALM, {"roles": {"subscriber": {}}, "authmethods": ["ticket"],
                                             "authextra": {"x": [[]] * 140_000}}], separators=(",", ":")).encode()


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    port = free_port()
    config = node_config(port=port, root=REPO, interface="127.0.0.1")
    options = config["workers"][0]["transports"][0]["paths"]["ws"]["options"]
    options.update(auto_ping_interval=PING_MS, auto_ping_timeout=PING_MS)
    n = Node(tmp_path_factory.mktemp("bounds"), port=port, name="bounds", config=config,
             env={"DEPTCAST_AUTH_TIMEOUT": str(AUTH_TIMEOUT), "DEPTCAST_SEND_BUFFER": str(SEND_BUFFER),
                  "DEPTCAST_RATE": "0", "DEPTCAST_HISTORY_RATE": "0", "DEPTCAST_CALLS_IN_FLIGHT": str(IN_FLIGHT),
                  "DEPTCAST_MAX_SUBSCRIPTIONS": str(MAX_SUBSCRIPTIONS), "DEPTCAST_PRESENCE_RATE": "0.01",
                  "DEPTCAST_PRESENCE_BURST": str(PRESENCE_BURST)})
    n.start()
    yield n
    n.stop()


_counter = iter(range(1, 1_000_000))


def fresh(prefix: str) -> str:
    return f"{prefix}{next(_counter)}x{int(time.time() * 1000) % 100000}"


def joined(node, user: str, dept: str, **kwargs) -> RawWamp:
    client = RawWamp(node.port, **kwargs)
    client.join(token(user, dept))
    return client


def wait_until(predicate, timeout: float = 20.0, what: str = "a condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def still_serves(node):
    dept = fresh("alive")
    client = joined(node, fresh("u"), dept)
    try:
        client.subscribe(f"deptcast.dept.{dept}")
        assert client.call("deptcast.send", dept, "still here")[0] == RESULT
        event = client.receive()
        assert event[0] == EVENT and event[4][0]["message"] == "still here", event
    finally:
        client.close()


# -------------------------------------------------------------------- before authentication


def test_a_large_hello_is_refused_before_it_is_parsed(node):
    socks = []
    try:
        for _ in range(5):
            sock, _ = raw.websocket_upgrade(node.port, "/ws", ["wamp.2.json"])
            try:
                raw.send_frame(sock, BIG_HELLO)
            except ConnectionError:
                pass  # closed as soon as the frame's length was read
            socks.append(sock)
        # 1009 (message too big): the length was over the bound before authentication
        assert [raw.read_close(s, 10) for s in socks] == [1009] * 5
    finally:
        for s in socks:
            s.close()
    assert metric(node, "deptcast_connections_closed_total", reason="too_large") >= 5
    # an authenticated session keeps the transport's own limit (a 200 KB send is answered)
    dept = fresh("big")
    client = joined(node, fresh("u"), dept)
    try:
        answer = client.call("deptcast.send", dept, "a" * 200_000)
        assert answer[0] == ERROR and answer[4] == "deptcast.error.too_large", answer[:5]
    finally:
        client.close()
    still_serves(node)


def test_a_connection_that_does_not_authenticate_in_time_is_closed(node):
    sock, _ = raw.websocket_upgrade(node.port, "/ws", ["wamp.2.json"])
    try:
        # nothing sent: closed with 1008 (policy) after the auth timeout, before any ping
        # failure (the raw socket does not answer pings: that alone would close it with no
        # close frame)
        assert raw.read_close(sock, AUTH_TIMEOUT + 10) == 1008
    finally:
        sock.close()
    assert metric(node, "deptcast_connections_closed_total", reason="auth_timeout") >= 1


def test_200_malformed_hellos_add_fewer_than_20_log_lines(node):
    node.mark_log()
    before = len(node.log_since_start().splitlines())
    counted = metric(node, "deptcast_connections_closed_total", reason="protocol_error")
    for i in range(200):
        sock, _ = raw.websocket_upgrade(node.port, "/ws", ["wamp.2.json"])
        try:
            # a HELLO whose details are not a dict: a WAMP protocol error
            raw.send_frame(sock, json.dumps([HELLO, names.REALM, [i]]).encode())
            assert raw.read_close(sock, 10) == 1002
        finally:
            sock.close()
    # every failure counted, and a summary line that covers them written
    wait_until(lambda: metric(node, "deptcast_connections_closed_total", reason="protocol_error") >= counted + 200,
               what="200 protocol errors counted")
    text = wait_until(lambda: re.search(r"refused [0-9,]+ connections in the last .*protocol_error",
                                        node.log_since_start()) and node.log_since_start(),
                      timeout=30, what="the summary line")
    added = text.splitlines()[before:]
    assert len(added) < 20, "\n".join(added[:40])
    assert "Traceback" not in text
    still_serves(node)


# -------------------------------------------------------------------- after authentication


def test_a_reader_that_falls_behind_is_closed_with_1008_and_counted(node):
    dept = fresh("slow")
    slow = joined(node, fresh("slow"), dept, rcvbuf=4096)
    sender = joined(node, fresh("s"), dept)
    try:
        slow.subscribe(f"deptcast.dept.{dept}")
        sender.subscribe(f"deptcast.dept.{dept}")
        before = metric(node, "deptcast_connections_closed_total", reason="slow_reader")
        # 60 KB messages until the node has closed the reader that does not read (the sender
        # reads its own: it is not behind)
        sent = 0
        while metric(node, "deptcast_connections_closed_total", reason="slow_reader") == before:
            assert sent < 400, "the slow reader was never closed"
            assert sender.call("deptcast.send", dept, "x" * 60_000)[0] == RESULT
            sent += 1
            while sender.receive(timeout=0.01) is not None:
                pass
        # it reads now: what was queued before the close, then the close frame, 1008
        while True:
            message = slow.receive(timeout=10)
            assert message is not None, "no close frame"
            if message[0] == CLOSE:
                assert message[1] == 1008
                break
            assert message[0] == EVENT
    finally:
        slow.close()
        sender.close()
    assert "slow_reader" in node.log_since_start()
    still_serves(node)


def test_a_client_that_sends_but_never_reads_is_dropped(node):
    dept = fresh("deaf")
    deaf = joined(node, fresh("deaf"), dept, rcvbuf=4096)
    try:
        # tiny frames that get no answer (a publish a member may not make, unacknowledged),
        # never reading: the pings it does not answer end it
        end = time.monotonic() + 30
        while True:
            assert time.monotonic() < end, "a client that sends but never reads was not dropped"
            try:
                deaf.send([16, deaf.request(), {}, f"deptcast.dept.{dept}", ["x"]])
            except (ConnectionError, socket.timeout):
                break
            time.sleep(0.05)
    finally:
        deaf.close()
    still_serves(node)


# -------------------------------------------------------------------- what clients see


def test_events_carry_no_internals(node):
    dept = fresh("internals")
    listener = joined(node, fresh("l"), dept)
    sender = joined(node, fresh("s"), dept)
    try:
        listener.subscribe(f"deptcast.dept.{dept}")
        assert sender.call("deptcast.send", dept, "hello")[0] == RESULT
        event = listener.receive()
        assert event[0] == EVENT, event
        details = event[3]
        assert not {"publisher", "publisher_authid", "publisher_authrole", "forward_for"} & set(details), details
        assert event[4][0]["message"] == "hello"
    finally:
        listener.close()
        sender.close()


def test_history_positions_out_of_range_are_invalid_frame(node):
    dept = fresh("pos")
    client = joined(node, fresh("u"), dept)
    try:
        for bad in (2 ** 70, -1, 2 ** 63, 1.5, "3", True):
            answer = client.call("deptcast.history", positions={names.TOPIC_ALL: bad})
            assert answer[0] == ERROR and answer[4] == "deptcast.error.invalid_frame", (bad, answer)
        answer = client.call("deptcast.history", positions={names.TOPIC_ALL: 2 ** 63 - 1})
        assert answer[0] == RESULT, answer
    finally:
        client.close()


@pytest_twisted.inlineCallbacks
def test_nothing_reaches_a_session_after_its_goodbye(node):
    """The node says GOODBYE (here: wamp.session.kill, as the drain does for every client);
    the session stays attached until the client answers, and must get nothing meanwhile."""
    dept = fresh("bye")
    leaving = joined(node, fresh("leaving"), dept)
    staying = joined(node, fresh("staying"), dept)
    inspector = yield connect_inspector(node.node_dir)
    try:
        leaving.subscribe(f"deptcast.dept.{dept}")
        staying.subscribe(f"deptcast.dept.{dept}")
        yield inspector.call("wamp.session.kill", leaving.session, reason="wamp.close.system_shutdown",
                             message="test")
        goodbye = leaving.receive()
        assert goodbye is not None and goodbye[0] == GOODBYE, goodbye
        # not answered: the session is still attached; a message to its department
        assert staying.call("deptcast.send", dept, "after goodbye")[0] == RESULT
        event = staying.receive()
        assert event[0] == EVENT and event[4][0]["message"] == "after goodbye"
        # the same broker loop wrote to both sockets: anything for the leaving one is there by now
        late = leaving.receive(timeout=1.0)
        assert late is None, late
    finally:
        leaving.close()
        staying.close()
        inspector.leave()


# -------------------------------------------------------------------- per session


def test_calls_beyond_those_in_flight_are_rate_limited(node):
    dept = fresh("flight")
    client = joined(node, fresh("u"), dept)
    try:
        # 40 history calls in one write, none waited for
        first = client.request() + 1
        batch = b""
        for _ in range(40):
            payload = json.dumps([48, client.request(), {}, "deptcast.history", [], {"limit": 1}]).encode()
            head, mask = raw.frame_header(0x1, len(payload))
            batch += head + raw.masked(payload, mask)
        client.sock.sendall(batch)
        answers = {}
        while len(answers) < 40:
            message = client.receive()
            assert message is not None and message[0] in (RESULT, ERROR), message
            request = message[1] if message[0] == RESULT else message[2]
            answers[request] = message
        assert sorted(answers) == list(range(first, first + 40))
        refused = [m for m in answers.values() if m[0] == ERROR]
        assert refused and all(m[4] == "deptcast.error.rate_limited" and "in flight" in m[5][0] for m in refused)
        assert len(refused) <= 40 - IN_FLIGHT
        # answered: the next call goes through
        assert client.call("deptcast.history", limit=1)[0] == RESULT
    finally:
        client.close()
    assert metric(node, "deptcast_calls_refused_in_flight_total") >= len(refused)


def test_a_session_holds_a_bounded_number_of_subscriptions(node):
    client = RawWamp(node.port)
    client.join(token(fresh("boss"), fresh("hq"), "publisher"))
    try:
        topics = [f"deptcast.dept.{fresh('d')}" for _ in range(MAX_SUBSCRIPTIONS)]
        for topic in topics:
            client.subscribe(topic)
        client.send([32, client.request(), {}, f"deptcast.dept.{fresh('d')}"])
        answer = client.receive()
        assert answer[0] == ERROR and answer[4] == "wamp.error.not_authorized", answer
        # one it holds already is answered as before
        client.subscribe(topics[0])
    finally:
        client.close()


def test_presence_online_is_rate_limited_per_user(node):
    dept = fresh("pres")
    user = fresh("u")
    first = joined(node, user, dept)
    second = joined(node, user, dept)
    try:
        for _ in range(PRESENCE_BURST):
            assert first.call("deptcast.presence.online", dept)[0] == RESULT
        # the same user on another session shares the budget
        answer = second.call("deptcast.presence.online", dept)
        assert answer[0] == ERROR and answer[4] == "deptcast.error.rate_limited", answer
    finally:
        first.close()
        second.close()
