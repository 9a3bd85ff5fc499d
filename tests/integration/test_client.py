"""The Python client and ``deptcast listen`` / ``deptcast send`` on a real node: a listener
killed (SIGKILL) and restarted with ``--state`` while messages flow prints each message once
overall, and the README's asyncio and Twisted examples run as written."""

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from components.client.errors import NotAuthorized
from components.client.tx import Client
from components.core.recovery import envelope_key, parse_state
from tests.support.nodes import REPO, TEST_SECRET, token
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
def test_listen_killed_and_restarted_with_state_prints_each_message_once(node, tmp_path):
    dept = _unique("ward")
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
    printed = printed_first + second.envelopes()
    print(f"\nlisten --state: {len(sender.accepted)} sent; the first listener printed {len(printed_first)} before "
          f"SIGKILL, the second {len(second.envelopes())} (resumed from {json.loads(state.read_text())['positions']})")
    assert printed_first and second.envelopes()
    # every message was sent after the first listener started: all of them, once each, in order
    _assert_once_in_order(printed, sender.accepted)
    assert [e["id"] for e in printed] == [e["id"] for e in sender.accepted]
    assert second.proc.returncode == 0 and "Traceback" not in second.err.read_text()


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
