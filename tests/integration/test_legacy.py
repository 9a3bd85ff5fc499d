"""The legacy ``/webSocket/<key>`` endpoint against real nodes, with a plain WebSocket client
that behaves like the old page (no WAMP library on the legacy side).

Every test uses departments and users of its own, so tests sharing the module's node cannot
see each other's messages. "Exactly once" is proved with a marker: after the messages under
test, one more message is sent; once it has arrived, everything sent before it has too.
"""

import json
import time
from typing import List

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from components.ops.nodeconfig import node_config
from components.core.tokens import issue_token
from tests.support import raw
from tests.support.legacy import HandshakeRefused, LegacySocket, connect_legacy
from tests.support.nodes import REPO, TEST_SECRET, Node, started, token
from tests.support.wamp import connect, connect_inspector, subscriber_count, wait_for

TOO_LARGE = "deptcast.error.too_large"
INVALID_FRAME = "deptcast.error.invalid_frame"
NOT_AUTHORIZED = "deptcast.error.not_authorized"


def _legacy_config(**extra):
    """The config of a node whose legacy endpoint has ``extra`` options, on a given port."""
    def config(port: int) -> dict:
        return node_config(port=port, root=REPO, interface="127.0.0.1", extra_paths={
            "webSocket": {"type": "resource", "classname": "components.edge.legacy.LegacyResource",
                          "extra": extra}})
    return config


@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    """The module's nodes of their own, started at once (each test asks for its own one below)."""
    with started(
            # compatibility mode
            Node(tmp_path_factory.mktemp("legacy-open"), name="open", env={"DEPTCAST_LEGACY_OPEN": "1"}),
            # the legacy endpoint pings every second and drops a peer silent for 2 s more (autobahn's
            # timers round a deadline down to a whole second: a timeout under a second could fire
            # before any pong had a chance)
            Node(tmp_path_factory.mktemp("legacy-ping"), name="fastping",
                 config=_legacy_config(auto_ping_interval=1000, auto_ping_timeout=2000)),
            # no send rate limit, and legacy sockets may fall 256 KiB behind
            Node(tmp_path_factory.mktemp("legacy-backlog"), name="backlog", env={"DEPTCAST_RATE": "0"},
                 config=_legacy_config(max_send_backlog=256 * 1024)),
            # legacy keys are ``<user>@<dept>``
            Node(tmp_path_factory.mktemp("legacy-pattern"), name="pattern",
                 env={"DEPTCAST_LEGACY_KEY_PATTERN": "{user}@{dept}"})) as (open_, ping, backlog, pattern):
        yield {"open": open_, "fastping": ping, "backlog": backlog, "pattern": pattern}


@pytest.fixture(scope="module")
def open_node(nodes):
    """A node in compatibility mode (DEPTCAST_LEGACY_OPEN=1)."""
    return nodes["open"]


@pytest.fixture(scope="module")
def fast_ping_node(nodes):
    """A node whose legacy endpoint pings every second and drops a peer silent for 2 s more."""
    return nodes["fastping"]


@pytest.fixture(scope="module")
def backlog_node(nodes):
    """A node without a send rate limit whose legacy sockets may fall 256 KiB behind."""
    return nodes["backlog"]


@defer.inlineCallbacks
def _marker(sender, to: str, sockets: List[LegacySocket], text: str = "marker"):
    """Send ``text`` to ``to`` over WAMP and wait until every socket has it."""
    yield sender.call("deptcast.send", to, text)
    yield wait_for(lambda: all(text in s.messages() for s in sockets), what=f"{text!r} on every socket")


@defer.inlineCallbacks
def _legacy_marker(sock: LegacySocket, to: str, watchers: List[LegacySocket], text: str):
    """Send ``text`` from a legacy socket and wait until every watcher has it."""
    sock.send_json(to, text)
    yield wait_for(lambda: all(text in s.messages() for s in watchers), what=f"{text!r} on every watcher")


# -- the old page: key + token, heartbeat, department / All / direct messages as text


@pytest_twisted.inlineCallbacks
def test_old_page_receives_department_all_and_direct_messages_as_text(node):
    alice = yield connect_legacy(node.port, "t1sales_alice", token("alice", "t1sales"))
    boss = yield connect(node.url, token("boss", "t1hq", "publisher"))
    try:
        for _ in range(3):
            alice.heartbeat()  # the old page's "ping" gets no reply and breaks nothing
        yield boss.call("deptcast.send", "t1sales", "for sales")
        yield boss.call("deptcast.send", "All", "for everyone")
        yield boss.call("deptcast.send", "t1sales_alice", "for alice")
        # none of these are alice's
        yield boss.call("deptcast.send", "t1other", "for another department")
        yield boss.call("deptcast.send", "t1sales_bob", "for bob")
        alice.heartbeat()
        yield _marker(boss, "t1sales_alice", [alice])
        # exactly the message texts, each once, nothing else (no replies to ping, no errors)
        assert alice.texts == ["for sales", "for everyone", "for alice", "marker"]
        assert alice.binary_frames == 0
        assert alice.open_now
    finally:
        yield alice.close()
        yield boss.close()


@pytest_twisted.inlineCallbacks
def test_message_text_is_sent_unchanged(node):
    carol = yield connect_legacy(node.port, "t2dept_carol", token("carol", "t2dept"))
    boss = yield connect(node.url, token("boss2", "t2hq", "publisher"))
    try:
        texts = ['{"looks": "like json"}', "ünïcödé ✓ 通知", "  spaced  ", "ping"]
        for text in texts:
            yield boss.call("deptcast.send", "t2dept", text)
        yield _marker(boss, "t2dept", [carol])
        assert carol.texts == texts + ["marker"]
    finally:
        yield carol.close()
        yield boss.close()


# -- both directions between legacy sockets and WAMP clients


@pytest_twisted.inlineCallbacks
def test_legacy_sender_reaches_wamp_subscribers_and_other_legacy_sockets(node):
    dora = yield connect_legacy(node.port, "t3ops_dora", token("dora", "t3ops"))
    eve = yield connect_legacy(node.port, "t3ops_eve", token("eve", "t3ops"))
    wamp_member = yield connect(node.url, token("finn", "t3ops"))
    try:
        yield wamp_member.listen("deptcast.dept.t3ops")
        yield wamp_member.listen("deptcast.user.t3ops_finn")
        dora.send_json("t3ops", "hello ops")
        dora.send_json("t3ops_finn", "hello finn")
        dora.send_json("t3ops_eve", "hello eve")
        yield _legacy_marker(dora, "t3ops", [dora, eve], "marker")
        yield wait_for(lambda: "marker" in wamp_member.messages("deptcast.dept.t3ops"), what="marker over WAMP")
        dept_events = wamp_member.events["deptcast.dept.t3ops"]
        assert [e["message"] for e in dept_events] == ["hello ops", "marker"]
        first = dept_events[0]
        assert (first["scope"], first["target"], first["sender"], first["sender_dept"]) == \
            ("dept", "t3ops", "dora", "t3ops")
        assert isinstance(first["id"], str) and isinstance(first["ts"], int)
        assert wamp_member.messages("deptcast.user.t3ops_finn") == ["hello finn"]
        # legacy sockets: the department messages, and eve her direct one; no error frames
        assert dora.texts == ["hello ops", "marker"]
        assert eve.texts == ["hello ops", "hello eve", "marker"]
    finally:
        for c in (dora, eve, wamp_member):
            yield c.close()


@pytest_twisted.inlineCallbacks
def test_legacy_publisher_broadcasts_to_all(node):
    gus = yield connect_legacy(node.port, "t4hq_gus", token("gus", "t4hq", "publisher"))
    hal = yield connect_legacy(node.port, "t4far_hal", token("hal", "t4far"))
    listener = yield connect(node.url, token("ida", "t4else"))
    try:
        yield listener.listen("deptcast.all")
        gus.send_json("All", "to all from a legacy publisher")
        yield wait_for(lambda: "to all from a legacy publisher" in hal.messages(), what="All on hal")
        yield wait_for(lambda: listener.messages("deptcast.all") == ["to all from a legacy publisher"],
                       what="All over WAMP")
        gus.send_json("t4far", "publisher to another department")
        yield wait_for(lambda: "publisher to another department" in hal.messages(), what="dept message")
        assert hal.texts == ["to all from a legacy publisher", "publisher to another department"]
        assert gus.errors() == []
    finally:
        for c in (gus, hal, listener):
            yield c.close()


# -- refusals: an error frame, the connection stays open, nothing is published


@pytest_twisted.inlineCallbacks
def test_bad_frames_get_error_frames_and_the_socket_stays_usable(node):
    jo = yield connect_legacy(node.port, "t5dept_jo", token("jo", "t5dept"))
    peer = yield connect_legacy(node.port, "t5dept_kim", token("kim", "t5dept"))
    try:
        bad = [
            ("{not json", INVALID_FRAME),
            ('["to", "message"]', INVALID_FRAME),
            ('{"message": "no to"}', INVALID_FRAME),
            ('{"to": "t5dept"}', INVALID_FRAME),
            ('{"to": "", "message": "x"}', INVALID_FRAME),
            ('{"to": "t5dept", "message": ""}', INVALID_FRAME),
            ('{"to": 42, "message": "x"}', INVALID_FRAME),
            ('{"to": "bad dept!", "message": "x"}', INVALID_FRAME),
            ('{"to": "t5other", "message": "x"}', NOT_AUTHORIZED),
            ('{"to": "All", "message": "x"}', NOT_AUTHORIZED),
            ('{"to": "t5other_lee", "message": "x"}', NOT_AUTHORIZED),
        ]
        for i, (frame, uri) in enumerate(bad):
            jo.send_text(frame)
            # one at a time: each refusal answers its own frame
            yield wait_for(lambda: len(jo.errors()) == i + 1,  # noqa: B023 (awaited before the loop moves on)
                           what=f"the error frame for {frame!r}")
            assert jo.errors()[i]["error"] == uri, frame
            assert jo.errors()[i]["detail"]
        yield _legacy_marker(jo, "t5dept", [jo, peer], "still works")
        # none of the refused frames reached anybody
        assert peer.texts == ["still works"]
        assert jo.messages() == ["still works"]
        assert jo.open_now
    finally:
        yield jo.close()
        yield peer.close()


@pytest_twisted.inlineCallbacks
def test_binary_frames_are_refused(node):
    max_ = yield connect_legacy(node.port, "t6dept_max", token("max", "t6dept"))
    try:
        max_.sendMessage(json.dumps({"to": "t6dept", "message": "as binary"}).encode(), isBinary=True)
        yield wait_for(lambda: max_.errors(), what="the error frame")
        assert max_.errors() == [{"error": INVALID_FRAME,
                                  "detail": "binary frames are not supported; send JSON text frames"}]
        yield _legacy_marker(max_, "t6dept", [max_], "after binary")
        assert max_.messages() == ["after binary"]  # the binary frame was not sent
    finally:
        yield max_.close()


@pytest_twisted.inlineCallbacks
def test_oversize_frames_are_refused_and_the_socket_stays_open(node):
    """The message limit is 64 KiB. A frame up to 2 * 64 KiB + 4 KiB is read and judged
    by ``deptcast.send``'s rules; a larger one is discarded as it arrives. Both answer
    ``too_large`` and leave the socket open."""
    ned = yield connect_legacy(node.port, "t7dept_ned", token("ned", "t7dept"))
    peer = yield connect_legacy(node.port, "t7dept_ola", token("ola", "t7dept"))
    try:
        limit = 64 * 1024
        ned.send_json("t7dept", "x" * limit)  # exactly at the limit: accepted
        yield wait_for(lambda: len(peer.messages()) == 1, what="the message at the limit")
        ned.send_json("t7dept", "y" * (limit + 1))  # one byte over: refused by check_send
        yield wait_for(lambda: len(ned.errors()) == 1, what="too_large for the message")
        assert ned.errors()[0]["error"] == TOO_LARGE
        assert "65537" in ned.errors()[0]["detail"]
        ned.send_json("t7dept", "z" * (4 * limit))  # over the frame cap: discarded unread
        yield wait_for(lambda: len(ned.errors()) == 2, what="too_large for the frame")
        assert ned.errors()[1]["error"] == TOO_LARGE
        assert "frames may have at most 135168" in ned.errors()[1]["detail"]
        yield _legacy_marker(ned, "t7dept", [ned, peer], "after oversize")
        assert [len(m) for m in peer.messages()] == [limit, len("after oversize")]
        assert ned.open_now
    finally:
        yield ned.close()
        yield peer.close()


# -- handshake refusals


@pytest_twisted.inlineCallbacks
def test_handshake_refusals(node):
    watcher = yield connect_legacy(node.port, "t8dept_pia", token("pia", "t8dept"))
    try:
        cases = [
            # (key, token, status, uri)
            ("noseparator", token("pia", "t8dept"), 400, INVALID_FRAME),
            ("t8dept_pia_extra", token("pia", "t8dept"), 400, INVALID_FRAME),
            ("t8 dept_pia", token("pia", "t8dept"), 400, INVALID_FRAME),
            ("t8other_pia", token("pia", "t8dept"), 403, NOT_AUTHORIZED),   # a key for another department
            ("t8dept_quin", token("pia", "t8dept"), 403, NOT_AUTHORIZED),   # another user's key
            ("t8dept_pia", None, 401, "deptcast.error.invalid_token"),     # no token, not open mode
            ("t8dept_pia", "not-a-jwt", 401, "deptcast.error.invalid_token"),
            ("t8dept_pia", token("pia", "t8dept")[:-3] + "abc", 401, "deptcast.error.invalid_token"),
            ("t8dept_pia", _expired("pia", "t8dept"), 401, "deptcast.error.token_expired"),
        ]
        for key, tok, status, uri in cases:
            with pytest.raises(HandshakeRefused) as info:
                yield connect_legacy(node.port, key, tok)
            assert info.value.status == status, (key, info.value.reason)
            assert info.value.reason.startswith(uri), (key, info.value.reason)
        for path in ("/webSocket/", "/webSocket/a_b/c"):
            with pytest.raises(HandshakeRefused) as info:
                yield connect_legacy(node.port, "", path=path)
            assert info.value.status == 400, path
        # the refusals broke nothing: the open socket still sends and receives
        yield _legacy_marker(watcher, "t8dept", [watcher], "still here")
        assert watcher.texts == ["still here"]
    finally:
        yield watcher.close()


def _expired(user: str, dept: str) -> str:
    return issue_token(TEST_SECRET, user, dept, ttl=60, now=time.time() - 3600)


# -- fan-out: one subscription per topic for all legacy sockets, released with the last


@pytest_twisted.inlineCallbacks
def test_sockets_share_one_subscription_per_topic_and_release_it(node):
    backend = yield connect_inspector(node.node_dir)
    boss = yield connect(node.url, token("boss9", "t9hq", "publisher"))
    sockets = []
    try:
        for i in range(25):
            sock = yield connect_legacy(node.port, f"t9dept_u{i}", token(f"u{i}", "t9dept"))
            sockets.append(sock)
        # 25 sockets, one router subscription (the bridge's) on their department topic
        count = yield subscriber_count(backend, "deptcast.dept.t9dept")
        assert count == 1
        yield boss.call("deptcast.send", "t9dept", "to 25 sockets")
        yield boss.call("deptcast.send", "t9dept_u7", "only u7")
        yield _marker(boss, "t9dept", sockets)
        for i, sock in enumerate(sockets):
            assert sock.texts == (["to 25 sockets", "only u7", "marker"] if i == 7
                                  else ["to 25 sockets", "marker"])
        # closing all but one keeps the subscription; closing the last releases it
        for sock in sockets[:-1]:
            yield sock.close()
        yield _wait_subscribers(backend, "deptcast.user.t9dept_u0", 0)  # u0's own topic went with u0
        count = yield subscriber_count(backend, "deptcast.dept.t9dept")
        assert count == 1
        yield sockets[-1].close()
        yield _wait_subscribers(backend, "deptcast.dept.t9dept", 0)
        yield _wait_subscribers(backend, "deptcast.user.t9dept_u24", 0)
    finally:
        for sock in sockets:
            yield sock.close()
        yield boss.close()
        backend.leave()


@defer.inlineCallbacks
def _wait_subscribers(backend, topic: str, expected: int, timeout: float = 10.0):
    state = {"count": None}

    @defer.inlineCallbacks
    def poll():
        state["count"] = yield subscriber_count(backend, topic)
    yield poll()
    deadline = reactor.seconds() + timeout
    while state["count"] != expected:
        if reactor.seconds() > deadline:
            raise AssertionError(f"{topic}: {state['count']} subscribers, expected {expected}")
        yield task.deferLater(reactor, 0.05, lambda: None)
        yield poll()


# -- liveness


@pytest_twisted.inlineCallbacks
def test_dead_peer_is_dropped_and_its_subscriptions_released(fast_ping_node):
    node = fast_ping_node
    backend = yield connect_inspector(node.node_dir)
    live = yield connect_legacy(node.port, "tadept_live", token("live", "tadept"))
    dead = yield connect_legacy(node.port, "tbdept_dead", token("dead", "tbdept"), answer_pings=False)
    try:
        count = yield subscriber_count(backend, "deptcast.dept.tbdept")
        assert count == 1
        # the silent peer is pinged, does not answer, and is dropped by the server
        yield wait_for(lambda: dead.close_info is not None, timeout=15, what="the dead peer dropped")
        assert dead.pings >= 1
        yield _wait_subscribers(backend, "deptcast.dept.tbdept", 0)
        yield _wait_subscribers(backend, "deptcast.user.dead", 0)
        # the live peer answers pings and stays: several ping rounds later it is still open
        yield wait_for(lambda: live.pings >= 3, timeout=15, what="three pings to the live socket")
        assert live.open_now and live.close_info is None
        count = yield subscriber_count(backend, "deptcast.dept.tadept")
        assert count == 1
        yield _legacy_marker(live, "tadept", [live], "alive")
    finally:
        yield live.close()
        yield dead.close()
        backend.leave()


@pytest_twisted.inlineCallbacks
def test_text_heartbeat_keeps_a_connection_alive(fast_ping_node):
    """The old page's ``ping`` text frames are traffic: a peer that never answers WebSocket
    pings but sends its heartbeat stays connected, and the heartbeat gets no reply."""
    node = fast_ping_node
    sock = yield connect_legacy(node.port, "tcdept_hb", token("hb", "tcdept"), answer_pings=False)
    beat = task.LoopingCall(sock.heartbeat)
    beat.start(0.25)
    try:
        # several ping rounds, each of which would have dropped a silent peer
        yield wait_for(lambda: sock.pings >= 4, timeout=20, what="four pings")
        assert sock.open_now and sock.close_info is None
        assert sock.texts == []
    finally:
        beat.stop()
        yield sock.close()


@pytest_twisted.inlineCallbacks
def test_a_peer_that_stops_reading_is_dropped_and_others_are_unaffected(backlog_node):
    node = backlog_node
    backend = yield connect_inspector(node.node_dir)
    slow = yield connect_legacy(node.port, "tedept_slowpoke", token("slowpoke", "tedept"))
    fast = yield connect_legacy(node.port, "tedept_quick", token("quick", "tedept"))
    boss = yield connect(node.url, token("boss", "tehq", "publisher"))
    try:
        slow.transport.pauseProducing()  # the page hangs: it reads nothing more
        chunk = "b" * (60 * 1024)
        sent = 0
        # the kernel buffers a few MB on loopback before the router's own backlog grows
        while "by tedept_slowpoke: slow_reader" not in node.log_since_start():
            assert sent < 2000, "the slow socket was never dropped"
            yield boss.call("deptcast.send", "tedept", f"{sent:05d}{chunk}")
            sent += 1
        yield _wait_subscribers(backend, "deptcast.user.slowpoke", 0)
        yield _marker(boss, "tedept", [fast])
        # the reading peer got everything, once, in order
        assert fast.texts == [f"{i:05d}{chunk}" for i in range(sent)] + ["marker"]
        slow.transport.resumeProducing()
        yield wait_for(lambda: slow.close_info is not None, what="the slow socket to see its end")
        assert len(slow.texts) < sent
    finally:
        for c in (slow, fast, boss):
            yield c.close()
        backend.leave()


# -- a configured key pattern


def test_a_peer_that_sends_bad_frames_without_reading_is_dropped(backlog_node):
    """Each refused frame earns an error reply (a 7-byte frame, a 111-byte answer): the replies
    count against the backlog like messages, so a peer that sends without reading is dropped
    instead of growing the node's buffer without bound."""
    node = backlog_node
    sock, _ = raw.websocket_upgrade(node.port, f"/webSocket/tfdept_deaf?token={token('deaf', 'tfdept')}",
                                    timeout=30, rcvbuf=4096)
    head, mask = raw.frame_header(0x1, 1)
    batch = (head + raw.masked(b"x", mask)) * 1000
    before = _slow_readers_closed(node)
    try:
        sent = 0
        # the kernel buffers a few MB on loopback before the router's own backlog grows
        while _slow_readers_closed(node) == before:
            assert sent < 300, "300,000 refused frames later, the peer that does not read is still connected"
            try:
                sock.sendall(batch)
            except ConnectionError:
                pass  # dropped: the log line follows
            sent += 1
            time.sleep(0.01)
        # the connection is gone: what the peer had not read, then a reset or an end
        sock.settimeout(15)
        with pytest.raises(ConnectionError):
            while True:
                if not sock.recv(65536):
                    raise ConnectionResetError("closed")
    finally:
        sock.close()


def _slow_readers_closed(node) -> float:
    status, body = raw.http(node.port, "GET", "/metrics")
    assert status == 200
    for line in body.decode().splitlines():
        if line.startswith('deptcast_connections_closed_total{reason="slow_reader"} '):
            return float(line.split()[1])
    return 0.0


@pytest.fixture(scope="module")
def pattern_node(nodes):
    """A node whose legacy keys are ``<user>@<dept>``."""
    return nodes["pattern"]


@pytest_twisted.inlineCallbacks
def test_configured_key_pattern(pattern_node):
    node = pattern_node
    ann = yield connect_legacy(node.port, "ann@pdept", token("ann", "pdept"))
    try:
        with pytest.raises(HandshakeRefused) as info:
            yield connect_legacy(node.port, "pdept_ann", token("ann", "pdept"))
        assert info.value.status == 400 and "{user}@{dept}" in info.value.reason
        with pytest.raises(HandshakeRefused) as info:
            yield connect_legacy(node.port, "ann@other", token("ann", "pdept"))
        assert info.value.status == 403
        # an old page addresses users by their keys, in the configured form; the contract's
        # <dept>_<user> works as well
        ann.send_json("ann@pdept", "by legacy key")
        ann.send_json("pdept_ann", "by contract key")
        ann.send_json("bob@other", "not my department")
        yield wait_for(lambda: len(ann.texts) == 3, what="two messages and a refusal")
        assert ann.messages() == ["by legacy key", "by contract key"]
        assert [e["error"] for e in ann.errors()] == [NOT_AUTHORIZED]
    finally:
        yield ann.close()


# -- open (compatibility) mode


@pytest_twisted.inlineCallbacks
def test_open_mode_accepts_tokenless_clients_as_members(open_node):
    node = open_node
    assert "OPEN MODE (DEPTCAST_LEGACY_OPEN=1)" in node.log_since_start()
    rex = yield connect_legacy(node.port, "odept_rex")  # no token: the old page, unchanged
    sam = yield connect_legacy(node.port, "odept_sam")
    boss = yield connect(node.url, token("boss", "ohq", "publisher"))
    try:
        rex.send_json("odept", "tokenless hello")
        rex.send_json("All", "member may not")
        rex.send_json("oother", "nor this")
        yield wait_for(lambda: len(rex.errors()) == 2, what="two refusals")
        assert [e["error"] for e in rex.errors()] == [NOT_AUTHORIZED, NOT_AUTHORIZED]
        yield boss.call("deptcast.send", "odept_sam", "direct to sam")
        yield _marker(boss, "odept", [rex, sam])
        assert rex.messages() == ["tokenless hello", "marker"]
        assert sam.texts == ["tokenless hello", "direct to sam", "marker"]
        # a token, if given, must still be valid and match the key
        with pytest.raises(HandshakeRefused) as info:
            yield connect_legacy(node.port, "odept_rex", "garbage")
        assert info.value.status == 401
        with pytest.raises(HandshakeRefused) as info:
            yield connect_legacy(node.port, "oother_rex", token("rex", "odept"))
        assert info.value.status == 403
        with pytest.raises(HandshakeRefused) as info:
            yield connect_legacy(node.port, "not-a-key")
        assert info.value.status == 400
    finally:
        for c in (rex, sam, boss):
            yield c.close()


@pytest_twisted.inlineCallbacks
def test_tokens_never_reach_the_log(node):
    good = token("tok", "tddept")
    bad = good[:-4] + "AAAA"
    sock = yield connect_legacy(node.port, "tddept_tok", good)
    with pytest.raises(HandshakeRefused):
        yield connect_legacy(node.port, "tddept_tok", bad)
    with pytest.raises(HandshakeRefused):
        yield connect_legacy(node.port, "tdother_tok", good)
    yield sock.close()
    log = node.log_text()
    assert "deptcast legacy: refused" in log  # refusals are logged, at info...
    signature = good.rsplit(".", 1)[1]
    assert signature not in log and "AAAA" not in log  # ...without the token


def test_default_node_logs_no_open_mode_warning(node):
    assert "OPEN MODE" not in node.log_text()
    assert "deptcast legacy: /webSocket/<key> ready" in node.log_text()
