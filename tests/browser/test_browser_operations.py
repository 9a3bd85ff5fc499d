"""The browser client (``web/``) in a real headless chromium against nodes that do what operators
turn on: retention (a cached position older than what is kept), a low history rate limit (a
catch-up longer than the burst), and a graceful drain (SIGTERM of the node the page is on, in a
cluster behind nginx).

What the page asks and what the node answers is read off the page's WebSocket (a Playwright
route that passes every frame on). The rules themselves are unit-tested in
``tests/browser/js/`` and the shared vectors.
"""

import json
import re
import signal
import sqlite3
from typing import Any, Dict, List

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_browser import (RECONNECT_TIMEOUT_MS, base_url, cache_of, confirm_sign_in, connection,
                                        expect_timeline, plant_cache, wait_connected)
from tests.support.browser import screenshot, send_via_wamp
from tests.support.cluster import Cluster
from components.core.history import answer_cap, envelope_bytes
from components.ops.nodeconfig import node_config
from tests.support.nodes import REPO, Node, free_port, token, wait_until
from tests.support.pg import pg_schema

PRUNED = "deptcast.error.pruned"
RATE_LIMITED = "deptcast.error.rate_limited"
#: WAMP message types (JSON serializer): what the page sends and gets
CALL, RESULT, ERROR, GOODBYE = 48, 50, 8, 6


class Wire:
    """The page's WebSockets, passed through to the node: every deptcast.history call with its
    outcome (the number of envelopes, or the error URI), in order."""

    def __init__(self) -> None:
        self.sockets = 0
        self.calls: List[Dict[str, Any]] = []
        self._pending: Dict[tuple, Dict[str, Any]] = {}

    def setup(self, page: Page) -> None:
        page.route_web_socket(re.compile(r"/ws$"), self._route)

    def _route(self, ws) -> None:
        self.sockets += 1
        socket = self.sockets
        server = ws.connect_to_server()

        def from_page(message):
            frame = json.loads(message)
            if frame[0] == CALL and frame[3] == "deptcast.history":
                call = {"kwargs": frame[5] if len(frame) > 5 else {}, "outcome": None}
                self.calls.append(call)
                self._pending[(socket, frame[1])] = call
            server.send(message)

        def from_server(message):
            frame = json.loads(message)
            if frame[0] == RESULT and (socket, frame[1]) in self._pending:
                self._pending.pop((socket, frame[1]))["outcome"] = len(frame[3][0])
            elif frame[0] == ERROR and frame[1] == CALL and (socket, frame[2]) in self._pending:
                self._pending.pop((socket, frame[2]))["outcome"] = frame[4]
            ws.send(message)

        ws.on_message(from_page)
        server.on_message(from_server)

    def asked(self) -> List[Any]:
        """Each call as (what it asked, its outcome): positions as a dict, or "latest"."""
        return [("latest" if c["kwargs"].get("latest") else c["kwargs"]["positions"], c["outcome"])
                for c in self.calls]


def kept_seqs(node: Node, topic: str) -> List[int]:
    """The seqs the node's SQLite store still holds on ``topic``."""
    db = sqlite3.connect(str(node.node_dir / "deptcast.sqlite3"))
    try:
        return [r[0] for r in db.execute("SELECT seq FROM messages WHERE topic = ? ORDER BY seq", (topic,))]
    finally:
        db.close()


# ---- retention ----------------------------------------------------------------------------------

def test_a_cache_older_than_retention_resumes_from_what_is_kept_without_looping(retention_node, open_page):
    """The page's cached positions lie below what retention kept on two topics. The node refuses
    them (``deptcast.error.pruned``); the page reads the newest page (the department's newest
    3), finds where its direct messages are kept from, shows exactly the kept messages once,
    says that older ones are gone, and goes on, on its one connection."""
    node = retention_node
    dept, user = "ret", "rhea"
    dept_topic, all_topic, user_topic = f"deptcast.dept.{dept}", "deptcast.all", f"deptcast.user.{dept}_{user}"
    sam = token("sam", "ops", "publisher")
    direct = send_via_wamp(node.url, sam, [(f"{dept}_{user}", f"direct {i}") for i in range(1, 7)])
    notices = send_via_wamp(node.url, sam, [(dept, f"notice {i}") for i in range(1, 11)])
    wait_until(lambda: kept_seqs(node, dept_topic) == [8, 9, 10] and kept_seqs(node, user_topic) == [4, 5, 6],
               30, "retention to keep the newest 3 of each topic")

    wire = Wire()
    page = open_page(base_url(node), setup=wire.setup)
    expect(page.locator("#signin")).to_have_attribute("data-offer", "host")  # up, waiting for its host
    # an earlier visit on this computer saw the first of each
    plant_cache(page, dept, user, [direct[0], notices[0]], {dept_topic: 1, all_topic: 0, user_topic: 1})
    page.evaluate("t => { location.hash = 'token=' + t; }", token(user, dept))
    confirm_sign_in(page)
    wait_connected(page)
    expect_timeline(page, ["notice 10", "notice 9", "notice 8", "notice 1", "direct 6", "direct 5", "direct 4",
                           "direct 1"])
    expect(page.locator("#timeline-pruned")).to_be_visible()
    expect(page.locator("#timeline-pruned")).to_have_text(re.compile(r"^Older messages are no longer kept"))
    screenshot(page, "resumed-past-retention")

    position = {dept_topic: 1, all_topic: 0, user_topic: 1}
    assert wire.asked() == [
        (position, PRUNED),                                            # the cached positions: gone
        ("latest", 3),                                                 # the newest page: notices 8-10
        ({**position, dept_topic: 10}, PRUNED),                        # the direct messages: still gone
        ({all_topic: 0}, 0),                                           # All is fine
        ({user_topic: 1}, PRUNED), ({user_topic: 2}, PRUNED),          # where are they kept from?
        ({user_topic: 4}, 1), ({user_topic: 3}, 1),                    # ... from seq 4
        ({dept_topic: 10, all_topic: 0, user_topic: 3}, 3),            # direct 4-6
        ({dept_topic: 10, all_topic: 0, user_topic: 6}, 0),            # caught up
    ], wire.asked()
    assert all(c["kwargs"]["limit"] == 1 for c in wire.calls[3:8])
    assert wire.sockets == 1, "caught up on the one connection: no reconnect loop"

    # and it goes on: a new notice shows once, and the next visit resumes after it
    [new] = send_via_wamp(node.url, sam, [(dept, "after the catch-up")])
    expect_timeline(page, ["after the catch-up", "notice 10", "notice 9", "notice 8", "notice 1", "direct 6",
                           "direct 5", "direct 4", "direct 1"])
    page.evaluate("() => dispatchEvent(new Event('pagehide'))")  # saves now
    assert cache_of(page, dept, user)["positions"] == {dept_topic: new["seq"], all_topic: 0, user_topic: 6}
    expect(connection(page)).to_have_attribute("data-state", "connected")
    assert wire.sockets == 1


def test_a_first_visit_reads_an_older_topic_from_what_retention_kept(retention_node, open_page):
    """Nothing cached: the newest page (3) holds only department notices; the direct messages,
    older than that page, lost their first 3 to retention. Reading them from seq 0 is refused
    (``pruned``): the page finds where they are kept from and shows those, once."""
    node = retention_node
    dept, user = "ret2", "uma"
    user_topic = f"deptcast.user.{dept}_{user}"
    sam = token("sam", "ops", "publisher")
    send_via_wamp(node.url, sam, [(f"{dept}_{user}", f"direct {i}") for i in range(1, 7)])
    send_via_wamp(node.url, sam, [(dept, f"notice {i}") for i in range(1, 11)])
    wait_until(lambda: (kept_seqs(node, f"deptcast.dept.{dept}") == [8, 9, 10]
                        and kept_seqs(node, user_topic) == [4, 5, 6]),
               30, "retention to keep the newest 3 of each topic")
    wire = Wire()
    page = open_page(base_url(node) + "#token=" + token(user, dept), setup=wire.setup)
    confirm_sign_in(page)
    wait_connected(page)
    expect_timeline(page, ["notice 10", "notice 9", "notice 8", "direct 6", "direct 5", "direct 4"])
    dept_topic, all_topic = f"deptcast.dept.{dept}", "deptcast.all"
    assert wire.asked() == [
        ("latest", 3),                                                 # notices 8-10
        ({dept_topic: 10, all_topic: 0, user_topic: 0}, PRUNED),       # direct 1-3 are gone
        ({all_topic: 0}, 0),
        ({user_topic: 0}, PRUNED), ({user_topic: 1}, PRUNED),
        ({user_topic: 3}, 1), ({user_topic: 2}, PRUNED),               # kept from seq 4
        ({dept_topic: 10, all_topic: 0, user_topic: 3}, 3),
        ({dept_topic: 10, all_topic: 0, user_topic: 6}, 0),
    ], wire.asked()
    assert wire.sockets == 1


# ---- the history rate limit -------------------------------------------------------------------

@pytest.fixture(scope="module")
def slow_history_node(tmp_path_factory):
    """One history call per second per user, two at once; messages up to 256 KiB (so its
    answers' bound by bytes, which follows the WAMP message cap, is larger than the default's)."""
    port = free_port()
    config = node_config(port=port, root=REPO, interface="127.0.0.1", max_message_bytes=256 * 1024)
    n = Node(tmp_path_factory.mktemp("slowhistory"), port=port, config=config, name="slowhistory",
             env={"DEPTCAST_HISTORY_RATE": "1", "DEPTCAST_HISTORY_BURST": "2"})
    n.start()
    yield n
    n.stop()


def test_a_catch_up_past_the_history_rate_limit_waits_and_goes_on(slow_history_node, open_page):
    """20 messages of 60,000 characters: more than one page holds (an answer is bounded by what
    fits in one WAMP message, each envelope counted at its worst), and more calls than the node
    allows at once. The page pages on past a short page, waits out the refusals and asks the
    same again, on its one connection."""
    node = slow_history_node
    dept, user = "slow", "sid"
    dept_topic, all_topic, user_topic = f"deptcast.dept.{dept}", "deptcast.all", f"deptcast.user.{dept}_{user}"
    big = [(dept, f"big {i} " + "x" * 60000) for i in range(1, 22)]   # 21: the last page is a short one
    sent = send_via_wamp(node.url, token("sam", "ops", "publisher"), big)

    wire = Wire()
    page = open_page(base_url(node), setup=wire.setup)
    expect(page.locator("#signin")).to_have_attribute("data-offer", "host")  # up, waiting for its host
    plant_cache(page, dept, user, [], {dept_topic: 0, all_topic: 0, user_topic: 0})  # from the start
    page.evaluate("t => { location.hash = 'token=' + t; }", token(user, dept))
    confirm_sign_in(page)
    wait_connected(page, RECONNECT_TIMEOUT_MS)
    ids = [li.get_attribute("data-id") for li in page.locator("#timeline .msg").all()]
    assert ids == [e["id"] for e in reversed(sent)], "each once, newest first"

    # the pages the node's bound makes: envelopes until the next would pass answer_cap
    cap, expected, start = answer_cap(256 * 1024), [], 0
    while start < len(big):
        total, n = 0, 0
        while start + n < len(big) and (n == 0 or total + envelope_bytes(big[start + n][1]) <= cap):
            total += envelope_bytes(big[start + n][1])
            n += 1
        expected.append((start, n))
        start += n
    assert len(expected) >= 2   # more than one answer
    answered = [(asked[dept_topic], outcome) for asked, outcome in wire.asked() if outcome != RATE_LIMITED]
    assert expected[-1][1] < expected[0][1]
    assert answered == expected + [(len(big), 0)], wire.asked()   # a short page is not the end
    refused = [i for i, (_, outcome) in enumerate(wire.asked()) if outcome == RATE_LIMITED]
    assert refused, "the third call came while the burst was spent"
    for i in refused:  # each refused call is asked again, the same
        assert wire.calls[i + 1]["kwargs"] == wire.calls[i]["kwargs"]
    assert wire.sockets == 1, "no reconnect: a rate limit is not a failure"
    expect(page.locator("#timeline-pruned")).to_be_hidden()


# ---- graceful drain ---------------------------------------------------------------------------

#: before the page's scripts: note every WebSocket the page makes (when, and the delay of the
#: timer whose callback made it), every GOODBYE it gets, and every text of the connection state
DRAIN_PROBE = """
(() => {
  const probe = { sockets: [], goodbyes: [], states: [] };
  window.drainProbe = probe;
  let timerDelay = null; // the delay of the timer whose callback is running
  const nativeSetTimeout = window.setTimeout;
  window.setTimeout = function (fn, ms, ...rest) {
    if (typeof fn !== "function") return nativeSetTimeout(fn, ms, ...rest);
    return nativeSetTimeout(function () {
      const outer = timerDelay;
      timerDelay = Number(ms) || 0;
      try { return fn.apply(this, rest); } finally { timerDelay = outer; }
    }, ms);
  };
  const NativeWebSocket = window.WebSocket;
  window.WebSocket = class extends NativeWebSocket {
    constructor(...args) {
      super(...args);
      probe.sockets.push({ at: performance.now(), timer: timerDelay });
      this.addEventListener("message", (event) => {
        let frame;
        try { frame = JSON.parse(event.data); } catch (e) { return; }
        if (frame[0] === 6) probe.goodbyes.push({ at: performance.now(), reason: frame[2] });
      });
    }
  };
  document.addEventListener("DOMContentLoaded", () => {
    const text = document.getElementById("conn-text");
    new MutationObserver(() => probe.states.push(text.textContent))
      .observe(text, { childList: true, characterData: true, subtree: true });
  });
})();
"""


@pytest.fixture
def cluster(tmp_path):
    """Two nodes behind nginx on the machine's PostgreSQL."""
    with pg_schema("deptcast_drain") as db:
        c = Cluster(tmp_path / "cluster", db, count=2)
        c.start()
        try:
            yield c
        finally:
            c.stop()


def wamp_sessions(node: Node) -> int:
    health = node.health()
    return health.body.get("sessions", {}).get("wamp", 0) if health is not None else -1


def test_a_draining_node_sends_the_page_to_another_node_at_once(cluster, open_page):
    """SIGTERM to the node the page is on: it says GOODBYE (``wamp.close.system_shutdown``); the
    page reconnects within half a second (not after its 1-20 s back-off), through nginx, to the
    other node, and shows what is sent there once."""
    lb = f"http://127.0.0.1:{cluster.nginx.port}/"
    dept, user = "drain", "dora"
    page = open_page(lb + "#token=" + token(user, dept), setup=lambda p: p.add_init_script(DRAIN_PROBE))
    confirm_sign_in(page)
    wait_connected(page)
    sam = token("sam", "ops", "publisher")
    send_via_wamp(cluster.url, sam, [(dept, "before the drain")])
    expect_timeline(page, ["before the drain"])
    # the page is the only client left: its node is the one with a WAMP session
    wait_until(lambda: sorted(wamp_sessions(n) for n in cluster.nodes.values()) == [0, 1], 30,
               "the sender's session to go")
    [victim] = [n for n in cluster.nodes.values() if wamp_sessions(n) == 1]
    [other] = [n for n in cluster.nodes.values() if n is not victim]

    victim.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: page.evaluate("drainProbe.sockets.length") >= 2, 30, "the page to reconnect")
    wait_connected(page)
    probe = page.evaluate("drainProbe")
    [goodbye] = probe["goodbyes"]
    assert goodbye["reason"] == "wamp.close.system_shutdown"
    first, second = probe["sockets"][:2]
    # the new connection was opened by a timer of at most 0.5 s (the back-off starts at 0.75 s)
    assert second["timer"] is not None and 0 <= second["timer"] <= 500, probe
    assert len(probe["sockets"]) == 2, "the first attempt reached the other node"
    assert "Server restarting: reconnecting…" in probe["states"]
    assert not any(s.startswith("Connection lost") for s in probe["states"]), probe["states"]
    wait_until(lambda: wamp_sessions(other) == 1, 30, "the page's session on the other node")
    print(f"\ndrain: GOODBYE to the new WebSocket {second['at'] - goodbye['at']:.0f} ms "
          f"(timer {second['timer']:.0f} ms)")

    send_via_wamp(cluster.url, sam, [(dept, "after the drain")])
    expect_timeline(page, ["after the drain", "before the drain"])
    expect(connection(page)).to_have_attribute("data-state", "connected")
    victim.proc.wait(30)
