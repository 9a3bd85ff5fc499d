"""The Python client and ``deptcast listen`` / ``deptcast send`` on a real node: a listener
killed (SIGKILL) and restarted with ``--state`` while messages flow prints each message once
overall; a listener whose saved position is older than what retention kept prints exactly the
kept messages once and goes on; a catch-up past the history rate limit waits and goes on; and
the README's asyncio and Twisted examples run as written."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task, threads

from components.client.errors import NotAuthorized
from components.client.tx import Client
from components.core.recovery import envelope_key
from components.core.statefile import format_state, parse_state
from components.ops.nodeconfig import node_config
from tests.support.browser import send_via_wamp
from tests.support.nodes import REPO, TEST_SECRET, Node, free_port, token, wait_until
from tests.support.wamp import wait_for

DEPTCAST = str(Path(sys.executable).with_name("deptcast"))


class Listener:
    """A ``deptcast listen`` process whose output goes to files."""

    def __init__(self, tmp: Path, name: str, args: List[str]) -> None:
        self.out = tmp / f"{name}.out"
        self.err = tmp / f"{name}.err"
        env = {**os.environ, "DEPTCAST_JWT_SECRET": TEST_SECRET}
        env.pop("DEPTCAST_URL", None)
        env.pop("DEPTCAST_TOKEN", None)
        self.proc = subprocess.Popen([DEPTCAST, "listen", *args], stdout=open(self.out, "w"),
                                     stderr=open(self.err, "w"), env=env, start_new_session=True)

    def lines(self) -> List[str]:
        return [ln for ln in self.out.read_text().split("\n") if ln]

    def envelopes(self) -> List[dict]:
        return [json.loads(ln) for ln in self.lines()]

    def connected(self) -> bool:
        return "connected" in self.err.read_text()

    def kill(self, sig=signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
        self.proc.wait(10)


class Sender:
    """Sends to one department as fast as the rate limit allows, until stopped."""

    def __init__(self, url: str, dept: str, user: str) -> None:
        self.client = Client(url, token(user, dept), listen=False)
        self.dept = dept
        self.accepted: List[dict] = []
        self.running = True

    @defer.inlineCallbacks
    def run(self):
        yield self.client.start()
        n = 0
        while self.running:
            n += 1
            env = yield defer.ensureDeferred(self.client.send(self.dept, f"m{n}"))
            self.accepted.append(env)
            yield task.deferLater(reactor, 0.06, lambda: None)  # under the 20/s rate limit
        yield self.client.stop()


def _unique(prefix: str) -> str:
    return f"{prefix}-{os.urandom(3).hex()}"


def _assert_once_in_order(printed: List[dict], accepted: List[dict]) -> None:
    ids = [e["id"] for e in printed]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    assert not repeated, f"printed twice: {repeated}"
    missing = {e["id"] for e in accepted} - set(ids)
    assert not missing, f"{len(missing)} accepted messages never printed"
    per_topic: Dict[str, List[int]] = {}
    for e in printed:
        topic, seq = envelope_key(e)
        per_topic.setdefault(topic, []).append(seq)
    for topic, seqs in per_topic.items():
        assert seqs == sorted(seqs), f"{topic} out of order"


@pytest_twisted.inlineCallbacks
def test_listen_killed_and_restarted_with_state_resumes_right_after_its_saved_position(node, tmp_path):
    dept = _unique("ward")
    topic = f"deptcast.dept.{dept}"
    state = tmp_path / "listen.state"
    args = ["--url", node.url, "--user", "lena", "--dept", dept, "--state", str(state)]
    first = Listener(tmp_path, "first", args)
    second = None
    sender = Sender(node.url, dept, "pat")
    try:
        yield wait_for(first.connected, 30, "the first listener to connect")
        running = sender.run()
        yield wait_for(lambda: len(first.lines()) >= 15, 30, "the first listener to print 15 messages")
        first.kill()  # SIGKILL: no chance to tidy up
        printed_first = first.envelopes()
        saved = json.loads(state.read_text())["positions"][topic]  # replaced atomically: whole or the one before
        killed_at = len(sender.accepted)
        yield wait_for(lambda: len(sender.accepted) >= killed_at + 15, 30, "15 messages sent while it is down")
        second = Listener(tmp_path, "second", args)
        yield wait_for(second.connected, 30, "the second listener to connect")
        yield wait_for(lambda: len(sender.accepted) >= killed_at + 40, 30, "more messages while it runs")
        sender.running = False
        yield running
        last = sender.accepted[-1]["id"]
        yield wait_for(lambda: any(e["id"] == last for e in second.envelopes()), 30, "the last message")
        yield task.deferLater(reactor, 0.5, lambda: None)  # room for a late duplicate to show
    finally:
        sender.running = False
        for listener in (first, second):
            if listener is not None:
                listener.kill(signal.SIGTERM)
    printed_second = second.envelopes()
    print(f"\nlisten --state: {len(sender.accepted)} sent; the first listener printed {len(printed_first)} before "
          f"SIGKILL and had saved seq {saved}, the second printed {len(printed_second)}")
    accepted_ids = [e["id"] for e in sender.accepted]
    # every message was sent after the first listener started: it printed the first ones, in order
    assert printed_first and [e["id"] for e in printed_first] == accepted_ids[:len(printed_first)]
    # the position is saved after each printed line: SIGKILL finds it at the last line printed, or
    # (killed between writing a line and saving) one before it: the one line the docs say can repeat
    last_printed = envelope_key(printed_first[-1])[1]
    assert saved in (last_printed, last_printed - 1)
    # the second listener prints exactly what comes after the saved position: nothing missed, in order
    assert [e["id"] for e in printed_second] == [e["id"] for e in sender.accepted if envelope_key(e)[1] > saved]
    _assert_once_in_order(printed_second, [e for e in sender.accepted if envelope_key(e)[1] > saved])
    assert second.proc.returncode == 0 and "Traceback" not in second.err.read_text()


@pytest_twisted.inlineCallbacks
def test_listen_told_to_stop_twice_at_once_exits_cleanly(node, tmp_path):
    # `timeout 5 deptcast listen` sends SIGTERM to the command and again to its process group: two
    # signals at once (so does a service manager that signals a group, or Ctrl-C pressed twice)
    dept = _unique("stop")
    listener = Listener(tmp_path, "twice", ["--url", node.url, "--user", "ann", "--dept", dept])
    try:
        yield wait_for(listener.connected, 30, "the listener to connect")
    finally:
        if listener.proc.poll() is None:
            os.kill(listener.proc.pid, signal.SIGTERM)
            time.sleep(0.05)  # the second while the first is being handled (two at once would be one to Python)
            os.killpg(listener.proc.pid, signal.SIGTERM)
        listener.proc.wait(30)
    err = listener.err.read_text()
    assert listener.proc.returncode == 0, err
    assert "Traceback" not in err and "ReactorNotRunning" not in err, err


@pytest_twisted.inlineCallbacks
def test_send_and_listen_on_the_command_line(node, tmp_path):
    dept = _unique("cli")
    listener = Listener(tmp_path, "text", ["--url", node.url, "--user", "ann", "--dept", dept, "--format", "text"])
    env = {**os.environ, "DEPTCAST_URL": node.url, "DEPTCAST_TOKEN": token("bob", dept)}
    try:
        yield wait_for(listener.connected, 30, "the listener to connect")
        sent = subprocess.run([DEPTCAST, "send", "--to", dept, "Ward round at 10:30"], capture_output=True,
                              text=True, env=env, timeout=60)
        assert sent.returncode == 0, sent.stderr
        envelope = json.loads(sent.stdout)
        assert (envelope["message"], envelope["target"], envelope["sender"]) == ("Ward round at 10:30", dept, "bob")
        refused = subprocess.run([DEPTCAST, "send", "--to", "onco", "hello"], capture_output=True, text=True,
                                 env=env, timeout=60)
        assert refused.returncode == 1 and refused.stdout == ""
        assert refused.stderr == ("deptcast send: deptcast.error.not_authorized: a member may only send to its "
                                  f"own department ({dept})\n")
        yield wait_for(lambda: listener.lines(), 10, "the text line")
        [line] = listener.lines()
        assert re.fullmatch(rf"\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d  bob@{dept} -> {dept}: Ward round at 10:30", line)
    finally:
        listener.kill(signal.SIGTERM)
    assert listener.proc.returncode == 0


@pytest_twisted.inlineCallbacks
def test_a_refused_send_raises_its_class(node):
    client = Client(node.url, token("amy", "cardio"), listen=False)
    yield client.start()
    try:
        with pytest.raises(NotAuthorized) as refused:
            yield client.send("onco", "not my department")
        assert refused.value.uri == "deptcast.error.not_authorized"
    finally:
        yield client.stop()


# -- retention and the history rate limit


def _kept_seqs(node: Node, topic: str) -> List[int]:
    import sqlite3
    db = sqlite3.connect(str(node.node_dir / "deptcast.sqlite3"))
    try:
        return [r[0] for r in db.execute("SELECT seq FROM messages WHERE topic = ? ORDER BY seq", (topic,))]
    finally:
        db.close()


@pytest_twisted.inlineCallbacks
def test_listen_with_a_position_older_than_retention_prints_what_is_kept_once_and_goes_on(retention_node,
                                                                                         tmp_path):
    """The saved position lies below what retention kept on the department and the direct
    messages. The listener goes on from the newest page (the department's newest 3), finds
    where its direct messages are kept from, prints exactly the kept messages once, logs one
    line about it, and keeps listening on its one connection."""
    node = retention_node
    dept, user = "ret", "lena"
    topics = {"dept": f"deptcast.dept.{dept}", "all": "deptcast.all", "user": f"deptcast.user.{dept}_{user}"}
    sam = token("sam", "ops", "publisher")
    direct = yield threads.deferToThread(send_via_wamp, node.url, sam,
                                         [(f"{dept}_{user}", f"direct {i}") for i in range(1, 7)])
    notices = yield threads.deferToThread(send_via_wamp, node.url, sam, [(dept, f"notice {i}") for i in range(1, 11)])
    yield threads.deferToThread(
        wait_until, lambda: (_kept_seqs(node, topics["dept"]), _kept_seqs(node, topics["user"])) == ([8, 9, 10],
                                                                                                   [4, 5, 6]),
        30, "retention to keep the newest 3 of each topic")
    state = tmp_path / "lena.state"
    state.write_text(format_state(f"{dept}_{user}", {topics["dept"]: 1, topics["all"]: 0, topics["user"]: 1}))
    listener = Listener(tmp_path, "kept", ["--url", node.url, "--user", user, "--dept", dept, "--state", str(state),
                                           "--verbose"])
    try:
        yield wait_for(lambda: len(listener.lines()) >= 6, 30, "the kept messages")
        [after] = yield threads.deferToThread(send_via_wamp, node.url, sam, [(dept, "after the catch-up")])
        yield wait_for(lambda: len(listener.lines()) >= 7, 30, "the next message")
        yield wait_for(lambda: parse_state(state.read_bytes())[1][topics["dept"]] == after["seq"], 10,
                       "the position of the next message")
        assert listener.proc.poll() is None, "still listening"
    finally:
        listener.kill(signal.SIGTERM)
    printed = [e["message"] for e in listener.envelopes()]
    assert printed == ["notice 8", "notice 9", "notice 10", "direct 4", "direct 5", "direct 6", "after the catch-up"]
    assert [e["id"] for e in listener.envelopes()[:6]] == [e["id"] for e in notices[7:] + direct[3:]]
    assert parse_state(state.read_bytes())[1] == {topics["dept"]: after["seq"], topics["all"]: 0, topics["user"]: 6}
    err = listener.err.read_text()
    assert err.count("deptcast listen: connected") == 1, err          # no reconnect loop
    assert err.count("removed by the node's retention") == 1, err     # one line says so
    assert "Traceback" not in err and listener.proc.returncode == 0


@pytest.fixture(scope="module")
def slow_history_node(tmp_path_factory):
    """One history call per second per user, two at once; WebSocket limits sized for messages of
    256 KiB, so that a history answer of ~1 MiB can be sent (with the default limits it cannot:
    see the browser's test of the same)."""
    port = free_port()
    config = node_config(port=port, root=REPO, interface="127.0.0.1", max_message_bytes=256 * 1024)
    n = Node(tmp_path_factory.mktemp("slowhistory"), port=port, config=config, name="slowhistory",
             env={"DEPTCAST_HISTORY_RATE": "1", "DEPTCAST_HISTORY_BURST": "2"})
    n.start()
    yield n
    n.stop()


@pytest_twisted.inlineCallbacks
def test_a_catch_up_past_the_history_rate_limit_waits_and_goes_on(slow_history_node, tmp_path):
    """40 messages of 60,000 characters to catch up: pages of 17, 17 and 6 (the node bounds
    answers at ~1 MiB) and an empty one, where the node allows two calls at once and one a
    second. The client waits the refusals out and gets every message once, in order, on its
    first session."""
    node = slow_history_node
    dept, user = "slow", "sid"
    sent = yield threads.deferToThread(send_via_wamp, node.url, token("sam", "ops", "publisher"),
                                       [(dept, f"big {i} " + "x" * 60000) for i in range(1, 41)])
    state = tmp_path / "sid.state"
    state.write_text(format_state(f"{dept}_{user}", {f"deptcast.dept.{dept}": 0, "deptcast.all": 0,
                                                     f"deptcast.user.{dept}_{user}": 0}))
    received: List[dict] = []
    client = Client(node.url, token(user, dept), received.append, state=state)
    try:
        yield client.start()   # caught up
    finally:
        yield client.stop()
    assert [e["id"] for e in received] == [e["id"] for e in sent]
    stats = client.stats
    assert stats.from_history == 40 and stats.rate_limited >= 1, stats
    assert stats.joins == 1 and stats.reconnects == 0 and client.engine.fatal is None
    print(f"\nrate-limited catch-up: {stats.rate_limited} refusals waited out")


# -- the README's examples, as written


def _position(state: Path, topic: str) -> int:
    """The position a client's state file holds for ``topic`` (0 while there is none)."""
    try:
        return parse_state(state.read_bytes())[1].get(topic, 0)
    except (OSError, ValueError):
        return 0


def _examples() -> Dict[str, str]:
    """The asyncio and Twisted examples of the README's "Python backends" section."""
    text = (REPO / "README.md").read_text()
    assert "## Python backends" in text, "the README has no Python backends section"
    section = text.split("## Python backends", 1)[1].split("\n## ", 1)[0]
    found = {}
    for block in re.findall(r"```python\n(.*?)```", section, re.S):
        if "components.client.aio import" in block:
            found["asyncio"] = block
        elif "components.client.tx import" in block:
            found["twisted"] = block
    assert set(found) == {"asyncio", "twisted"}, "the Python backends section lacks an example"
    return found


@pytest.mark.parametrize("style", ["asyncio", "twisted"])
@pytest_twisted.inlineCallbacks
def test_the_readme_example_runs_and_resumes(node, tmp_path, style):
    """The example as written: it sends, prints what its department receives; stopped and
    started again, it prints what was sent meanwhile, and nothing twice."""
    dept = "cardio"  # the examples send to cardio; each run starts from now, so earlier tests do not show
    me = {"asyncio": "alice", "twisted": "bob"}[style]
    (tmp_path / "example.py").write_text(_examples()[style])
    env = {**os.environ, "DEPTCAST_URL": node.url, "DEPTCAST_TOKEN": token(me, dept), "PYTHONPATH": str(REPO)}
    other = Client(node.url, token("carol", dept), listen=False)
    yield other.start()

    def start(name):
        out = tmp_path / f"{name}.out"
        proc = subprocess.Popen([sys.executable, "-u", "example.py"], cwd=tmp_path, env=env,
                                stdout=open(out, "w"), stderr=subprocess.STDOUT, start_new_session=True)
        return proc, out

    try:
        proc, out = start("first")
        yield wait_for(lambda: "sent " in out.read_text(), 60, f"the {style} example to send")
        mine = out.read_text().split("sent ", 1)[1].split()[0]
        carol = yield other.send(dept, "from carol")
        yield wait_for(lambda: "carol -> " in out.read_text(), 30, "carol's message")
        # the example saves its position once it has handled an envelope (when the loop asks
        # for the next one): stopped before that, it would print carol's message again after
        # its restart, as the README says; stop it once the position holds it
        state = tmp_path / {"asyncio": "alice.position", "twisted": "bob.position"}[style]
        yield wait_for(lambda: _position(state, f"deptcast.dept.{dept}") >= carol["seq"], 30,
                       "the example to save the position of carol's message")
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
        first = out.read_text()
        assert f"{me} -> {dept} :" in first and f"carol -> {dept} : from carol" in first, first
        assert "Traceback" not in first
        yield other.send(dept, "while you were away")
        proc, out = start("second")
        yield wait_for(lambda: "while you were away" in out.read_text(), 60, "the missed message")
        yield wait_for(lambda: out.read_text().count("sent ") == 1, 30, "the second send")
        second_id = out.read_text().split("sent ", 1)[1].split()[0]
        yield wait_for(lambda: out.read_text().count(f"{me} -> {dept} :") == 1, 30, "its own second message")
        yield task.deferLater(reactor, 0.5, lambda: None)
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
        second = out.read_text()
        # resumed after carol's message: the missed one, then its own second send; nothing again
        assert "from carol" not in second and second.count("while you were away") == 1, second
        assert second_id != mine and "Traceback" not in second
    finally:
        yield other.stop()
