"""The Python client and the CLI on a real node, for the contract's session life, revocation,
safe retries, batches, receipts and the roster.

Each group needs procedures a node may not offer yet (the server side lands apart from the
client): a probe asks the node for the procedure once per module, and the group is skipped
only when the router answers that nobody offers it (``wamp.error.no_such_procedure``, or its
``wamp.error.not_authorized`` for a procedure the node's authorizer does not know), or when
admin tokens cannot be made yet. Any other answer means the node has it, and the tests run.

One test runs only on a node *without* ``deptcast.session.refresh``: what a client does with
an older node (a new session with the fresh token before ``exp``, nothing missed).
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from twisted.internet import defer, reactor, task, threads

from components.client import contract
from components.client.errors import InvalidFrame, Revoked, TokenExpired
from components.client.tx import Client
from components.core import names
from components.core.tokens import issue_token
from tests.support.nodes import TEST_SECRET, token
from tests.support.wamp import connect, wait_for

DEPTCAST = str(Path(sys.executable).with_name("deptcast"))

#: the router's answers to a procedure nobody offers (see the module)
NOT_OFFERED = (contract.NO_SUCH_PROCEDURE, contract.ROUTER_NOT_AUTHORIZED)


def _unique(prefix: str) -> str:
    return f"{prefix}-{os.urandom(3).hex()}"


def _admin_token(user: str = "probe", dept: str = "ops", ttl: int = 600) -> Optional[str]:
    """An admin token, or ``None`` while core's tokens do not take the role."""
    try:
        return issue_token(TEST_SECRET, user, dept, contract.ADMIN, ttl)
    except ValueError:
        return None


async def _offers(url: str, procedure: str, tok: str, *args) -> bool:
    """Whether the node offers ``procedure`` to ``tok``'s role: called with ``args`` (made to
    be refused, or harmless); only the router's not-offered answers say no."""
    session = await connect(url, tok)
    try:
        await session.call(procedure, *args)
    except ApplicationError as e:
        return e.error not in NOT_OFFERED
    finally:
        session.leave()
    return True


@pytest_twisted.async_fixture(scope="module")
async def offered(node) -> Dict[str, bool]:
    """Which of the new procedures the node offers (asked once per module; a probe never
    raises, so that a module-scoped asynchronous fixture never fails)."""
    member, admin = token("probe", "cardio"), _admin_token()
    probes = {contract.PROC_SESSION_REFRESH: (member, "not-a-token"),
              contract.PROC_SEND_BATCH: (member, []),
              contract.PROC_RECEIPTS: (member, "0"),
              contract.PROC_ADMIN_REVOKE: (admin, "not a user key"),
              names.PROC_ADMIN_ROSTER_IMPORT: (admin, "not rows")}
    out = {}
    for procedure, (tok, arg) in probes.items():
        out[procedure] = tok is not None and await _offers(node.url, procedure, tok, arg)
    out["admin tokens"] = admin is not None
    return out


def _require(node, offered: Dict[str, bool], procedure: str, admin: bool = False):
    if admin and not offered["admin tokens"]:
        pytest.skip("admin tokens cannot be made yet (core's tokens do not take the admin role)")
    if not offered[procedure]:
        pytest.skip(f"the node does not offer {procedure} yet")
    return node


@pytest.fixture
def refreshing(node, offered):
    """The node, if it offers deptcast.session.refresh (and so ends sessions at exp)."""
    return _require(node, offered, contract.PROC_SESSION_REFRESH)


@pytest.fixture
def revoking(node, offered):
    """The node, if it offers deptcast.admin.revoke."""
    return _require(node, offered, contract.PROC_ADMIN_REVOKE, admin=True)


@pytest.fixture
def batching(node, offered):
    """The node, if it offers deptcast.send_batch (and keyed sends with it)."""
    return _require(node, offered, contract.PROC_SEND_BATCH)


@pytest.fixture
def receipting(node, offered):
    """The node, if it offers deptcast.receipts (and deptcast.ack, deptcast.recipients)."""
    return _require(node, offered, contract.PROC_RECEIPTS)


@pytest.fixture
def rostering(node, offered):
    """The node, if it offers the roster's operator procedures."""
    return _require(node, offered, names.PROC_ADMIN_ROSTER_IMPORT, admin=True)


@pytest.fixture
def without_refresh(node, offered):
    """The node, if it does not offer deptcast.session.refresh (a node older than the client)."""
    if offered[contract.PROC_SESSION_REFRESH]:
        pytest.skip("the node offers deptcast.session.refresh: the older node's path is not what it runs")
    return node


def _cli(*args: str, env: Optional[Dict[str, str]] = None, timeout: float = 120) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("DEPTCAST_")}
    return subprocess.run([DEPTCAST, *args], capture_output=True, text=True, timeout=timeout,
                          env={**base, **(env or {})})


def _cli_in_thread(*args: str, env: Optional[Dict[str, str]] = None) -> defer.Deferred:
    """:func:`_cli` in a thread: the test's own clients keep running meanwhile."""
    return threads.deferToThread(_cli, *args, env=env)


class Listener:
    """A ``deptcast listen`` process whose output goes to files."""

    def __init__(self, tmp: Path, name: str, args: List[str], env: Optional[Dict[str, str]] = None) -> None:
        self.out, self.err = tmp / f"{name}.out", tmp / f"{name}.err"
        base = {k: v for k, v in os.environ.items() if not k.startswith("DEPTCAST_")}
        self.proc = subprocess.Popen([DEPTCAST, "listen", *args], stdout=open(self.out, "w"),
                                     stderr=open(self.err, "w"), env={**base, **(env or {})},
                                     start_new_session=True)

    def envelopes(self) -> List[dict]:
        return [json.loads(line) for line in self.out.read_text().splitlines() if line]

    def stderr(self) -> str:
        return self.err.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(15)


def _sleep(seconds: float) -> defer.Deferred:
    return task.deferLater(reactor, seconds, lambda: None)


def _minting(user: str, dept: str, ttl: int, role: str = "member"):
    """A token provider minting a token of ``ttl`` seconds at each ask, counting the asks."""
    def mint() -> str:
        mint.asked += 1
        return issue_token(TEST_SECRET, user, dept, role, ttl)
    mint.asked = 0
    return mint


# -- session life


@pytest_twisted.inlineCallbacks
def test_a_three_second_token_renewed_twenty_times_keeps_one_session_and_loses_nothing(refreshing):
    node = refreshing
    dept = _unique("renew")
    got: List[dict] = []
    listener = Client(node.url, _minting("lena", dept, 3), got.append)
    sender = Client(node.url, token("pat", dept, "publisher"), listen=False)
    sent: List[dict] = []
    try:
        yield listener.start()
        yield sender.start()
        while listener.stats.refreshes < 20:
            assert listener.engine.fatal is None, listener.engine.fatal
            sent.append((yield sender.send(dept, f"m{len(sent)}")))
            yield _sleep(0.25)
        sent.append((yield sender.send(dept, "last")))
        yield wait_for(lambda: len(got) >= len(sent), 15, "every message")
    finally:
        yield sender.stop()
        yield listener.stop()
    assert [e["id"] for e in got] == [e["id"] for e in sent]
    assert listener.stats.joins == 1 and listener.stats.refresh_reconnects == 0
    print(f"\n20 renewals of a 3 s token: {len(sent)} messages on one session")


@pytest_twisted.inlineCallbacks
def test_a_fixed_token_ends_at_its_expiry_and_the_client_says_so(refreshing, tmp_path):
    node = refreshing
    client = Client(node.url, token("fay", "cardio", ttl=3), listen=True)
    stopped = client.when_stopped()
    yield client.start()
    try:
        yield stopped
        raise AssertionError("the client did not stop")
    except TokenExpired as e:
        assert e.uri == contract.CLOSE_TOKEN_EXPIRED
    assert client.stats.joins == 1   # no loop: it never signed in again
    # the command line: one line, exit 1, no traceback
    listener = Listener(tmp_path, "fixed", ["--url", node.url], env={"DEPTCAST_TOKEN": token("gil", "cardio", ttl=3)})
    try:
        yield wait_for(lambda: listener.proc.poll() is not None, 30, "listen to end at the token's expiry")
    finally:
        listener.stop()
    err = listener.stderr().splitlines()
    assert listener.proc.returncode == 1 and err[-1].startswith("deptcast listen: deptcast.close.token_expired")
    assert "--token-file" in err[-1] and "Traceback" not in listener.stderr()


@pytest_twisted.inlineCallbacks
def test_listen_renews_from_its_token_file_on_one_connection(refreshing, tmp_path):
    node = refreshing
    dept = _unique("file")
    path = tmp_path / "token"

    def rewrite():
        tmp = tmp_path / "token.new"
        tmp.write_text(issue_token(TEST_SECRET, "tom", dept, "member", 4))
        tmp.chmod(0o600)
        tmp.replace(path)
    rewrite()
    writer = task.LoopingCall(rewrite)
    writer.start(1.0, now=False)
    listener = Listener(tmp_path, "tokenfile", ["--url", node.url, "--token-file", str(path)])
    sender = Client(node.url, token("pat", dept, "publisher"), listen=False)
    sent: List[dict] = []
    try:
        yield wait_for(lambda: "connected" in listener.stderr(), 30, "listen to connect")
        yield sender.start()
        for i in range(24):   # 12 s: three lifetimes of the first token
            sent.append((yield sender.send(dept, f"m{i}")))
            yield _sleep(0.5)
        yield wait_for(lambda: len(listener.envelopes()) >= len(sent), 15, "every message")
    finally:
        writer.stop()
        yield sender.stop()
        listener.stop()
    assert [e["id"] for e in listener.envelopes()] == [e["id"] for e in sent]
    err = listener.stderr()
    assert err.count("connected") == 1 and "connection lost" not in err and "Traceback" not in err, err


@pytest_twisted.inlineCallbacks
def test_a_node_without_refresh_gets_a_new_session_before_exp_and_nothing_is_missed(without_refresh):
    node = without_refresh
    dept = _unique("older")
    got: List[dict] = []
    provider = _minting("ole", dept, 4)
    listener = Client(node.url, provider, got.append)
    sender = Client(node.url, token("pat", dept, "publisher"), listen=False)
    sent: List[dict] = []
    try:
        yield listener.start()
        yield sender.start()
        for i in range(24):   # 12 s: three lifetimes of a token
            sent.append((yield sender.send(dept, f"m{i}")))
            yield _sleep(0.5)
        yield wait_for(lambda: len(got) >= len(sent), 15, "every message")
    finally:
        yield sender.stop()
        yield listener.stop()
    assert [e["id"] for e in got] == [e["id"] for e in sent]
    stats = listener.stats
    # every new session was one the client opened for a fresher token (the last may still be opening)
    assert stats.refreshes == 0 and stats.reconnects >= 2
    assert stats.refresh_reconnects in (stats.reconnects, stats.reconnects + 1)
    assert listener.engine.fatal is None and provider.asked >= 3


# -- revocation


@pytest_twisted.inlineCallbacks
def test_deptcast_revoke_ends_a_listener_that_says_so_and_stays_away(revoking, tmp_path):
    node = revoking
    dept = _unique("rev")
    node_dir = tmp_path / "nodedir"
    node_dir.mkdir()
    (node_dir / "jwt.secret").write_text(TEST_SECRET + "\n")
    # minted at every sign-in: only the client's own rule keeps it from signing in again
    listener = Listener(tmp_path, "revoked", ["--url", node.url, "--user", "rex", "--dept", dept,
                                              "--node-dir", str(node_dir)])
    got_revoked: List[BaseException] = []
    other = Client(node.url, _minting("rex", dept, 600))
    other.when_stopped().addErrback(lambda f: got_revoked.append(f.value))
    try:
        yield wait_for(lambda: "connected" in listener.stderr(), 30, "listen to connect")
        yield other.start()
        before = int(time.time()) - 1
        done = yield _cli_in_thread("revoke", f"{dept}_rex", "--url", node.url, "--node-dir", str(node_dir))
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"revoked {dept}_rex")
        yield wait_for(lambda: listener.proc.poll() is not None, 15, "the listener to end")
        yield wait_for(lambda: got_revoked, 15, "the client to stop")
        yield _sleep(2)   # time in which a client that reconnected would have
    finally:
        listener.stop()
        yield other.stop()
    err = listener.stderr()
    assert listener.proc.returncode == 1 and err.count("connected") == 1, err
    assert err.splitlines()[-1].startswith("deptcast listen: deptcast.close.revoked"), err
    assert isinstance(got_revoked[0], Revoked) and other.stats.joins == 1
    # a token issued before the revocation is refused as revoked: the client stops at once
    late = Client(node.url, issue_token(TEST_SECRET, "rex", dept, "member", 600, now=before))
    try:
        yield late.start()
        raise AssertionError("a token issued before the revocation signed in")
    except Revoked as e:
        assert e.uri == "deptcast.error.invalid_token"
    finally:
        yield late.stop()


def test_revoke_with_a_member_token_is_one_line_and_exit_1(revoking):
    done = _cli("revoke", "cardio_bob", "--url", revoking.url, env={"DEPTCAST_TOKEN": token("amy", "cardio")})
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("deptcast revoke: wamp.error.not_authorized") and done.stderr.count("\n") == 1


# -- safe retries and batches


@pytest_twisted.inlineCallbacks
def test_the_same_key_returns_the_first_envelope_and_stores_nothing_again(batching):
    node = batching
    dept = _unique("key")
    got: List[dict] = []
    listener = Client(node.url, token("lia", dept), got.append)
    sender = Client(node.url, token("pat", dept, "publisher"), listen=False)
    try:
        yield listener.start()
        yield sender.start()
        first = yield sender.send(dept, "once", key="shift-1")
        again = yield sender.send(dept, "once", key="shift-1")
        assert again == first
        with pytest.raises(InvalidFrame):
            yield sender.send(dept, "another text", key="shift-1")
        env = {"DEPTCAST_TOKEN": token("pat", dept, "publisher"), "DEPTCAST_URL": node.url}
        cli = []
        for _ in range(2):
            done = yield _cli_in_thread("send", "--to", dept, "from the CLI", "--key", "cli-1", env=env)
            cli.append(json.loads(done.stdout))
        assert cli[0] == cli[1] and cli[0]["seq"] == first["seq"] + 1
        yield wait_for(lambda: len(got) >= 2, 15, "the two notices")
        yield _sleep(1)
    finally:
        yield sender.stop()
        yield listener.stop()
    assert [e["id"] for e in got] == [first["id"], cli[0]["id"]]


@pytest_twisted.inlineCallbacks
def test_send_batch_on_the_command_line(batching, tmp_path):
    """600 notices in calls of 250 from a backend's publisher token; two are over the node's
    message limit: each is named with its line, the rest arrive once each, in order."""
    node = batching
    dept = _unique("batch")
    lines = [{"to": dept, "message": f"n{i}", "key": f"batch-{dept}-{i}"} for i in range(600)]
    lines[7] = {"to": dept, "message": "x" * 70000}
    lines[555] = {"to": dept, "message": "y" * 70000}
    path = tmp_path / "shift.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    got: List[dict] = []
    listener = Client(node.url, token("lia", dept), got.append)
    env = {"DEPTCAST_TOKEN": token("backend", "ops", "publisher")}
    try:
        yield listener.start()
        done = yield _cli_in_thread("send", "--batch", str(path), "--batch-size", "250", "--url", node.url, env=env)
        yield wait_for(lambda: len(got) >= 598, 60, "every notice sent")
        # the same file again: every key is known, nothing is stored twice
        again = yield _cli_in_thread("send", "--batch", str(path), "--url", node.url, env=env)
        yield _sleep(1)
    finally:
        yield listener.stop()
    assert done.returncode == 1, done.stderr
    assert done.stdout == "600 notices: 598 sent, 2 refused\n"
    err = done.stderr.splitlines()
    assert err[0].startswith(f"{path}:8: deptcast.error.too_large")
    assert any(line.startswith(f"{path}:556: deptcast.error.too_large") for line in err)
    assert [line for line in err if line.startswith("deptcast send:")] == [
        "deptcast send: 250 of 600 done", "deptcast send: 500 of 600 done", "deptcast send: 600 of 600 done"]
    assert again.stdout == "600 notices: 598 sent, 2 refused\n"
    assert [e["message"] for e in got] == [line["message"] for n, line in enumerate(lines) if n not in (7, 555)]


# -- receipts


@pytest_twisted.inlineCallbacks
def test_receipts_match_what_the_clients_acknowledged(receipting):
    node = receipting
    dept = _unique("rcpt")
    seen_by_ann: List[dict] = []
    ann = Client(node.url, token("ann", dept), seen_by_ann.append)                  # acknowledges, and says seen
    bob = Client(node.url, token("bob", dept), lambda e: None)                      # acknowledges delivered
    cy = Client(node.url, token("cy", dept), lambda e: None, acknowledge=False)     # says nothing
    pat = Client(node.url, token("pat", dept, "publisher"), listen=False)
    updates: List[dict] = []
    pat.on_receipts(updates.append)
    want = None
    try:
        for c in (ann, bob, cy, pat):
            yield c.start()
        envelope = yield pat.send(dept, "fire drill at 11")
        yield wait_for(lambda: seen_by_ann, 15, "ann's notice")
        ann.ack_seen([envelope["id"]])
        want = {"id": envelope["id"], "audience": 3, "seen": 1, "delivered": 1, "pending": 1}
        counts = {}

        @defer.inlineCallbacks
        def settled():
            counts.update((yield pat.receipts(envelope["id"])))
        for _ in range(60):
            yield settled()
            if counts == want:
                break
            yield _sleep(0.5)
        assert counts == want
        yield wait_for(lambda: updates and updates[-1] == want, 15, "the live counts")
        env = {"DEPTCAST_TOKEN": token("pat", dept, "publisher")}
        done = yield _cli_in_thread("receipts", envelope["id"], "--json", "--url", node.url, env=env)
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        text = yield _cli_in_thread("receipts", envelope["id"], "--url", node.url, env=env)
    finally:
        for c in (ann, bob, cy, pat):
            yield c.stop()
    assert report["receipts"] == want
    assert [(u["dept"], u["user"]) for u in report["seen"]] == [(dept, "ann")]
    assert [(u["dept"], u["user"]) for u in report["delivered"]] == [(dept, "bob")]
    assert [(u["dept"], u["user"]) for u in report["pending"]] == [(dept, "cy")]
    assert all(isinstance(u["at"], int) for u in report["seen"] + report["delivered"])
    assert text.returncode == 0 and f"  {dept}_cy" in text.stdout.splitlines()


def test_receipts_of_someone_elses_notice_are_refused_in_one_line(receipting):
    done = _cli("receipts", "0000000000000001", "--url", receipting.url,
                env={"DEPTCAST_TOKEN": token("amy", "cardio")})
    assert done.returncode == 1 and done.stdout == "" and done.stderr.count("\n") == 1
    assert done.stderr.startswith("deptcast receipts: deptcast.error.")


# -- the roster


@pytest_twisted.inlineCallbacks
def test_roster_import_list_and_remove_on_the_command_line(rostering, tmp_path):
    node = rostering
    dept = _unique("ros")
    node_dir = tmp_path / "nodedir"
    node_dir.mkdir()
    (node_dir / "jwt.secret").write_text(TEST_SECRET + "\n")
    admin = ["--url", node.url, "--node-dir", str(node_dir)]
    bad = tmp_path / "bad.csv"
    bad.write_text(f"dept,user\n{dept},ann\n{dept},b_ob\nAll,x\n")
    done = _cli("roster", "import", str(bad), *admin)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines()[:2] == [f"{bad}:3: 'b_ob' is not a user id (1-64 letters, digits, '-' or '.' "
                                            f"('.' neither first, last nor doubled))",
                                            f"{bad}:4: 'All' is not a department (it means everyone)"]
    good = tmp_path / "good.csv"
    good.write_text(f"dept,user\n{dept},ann\n{dept},bob\n{dept},cy\n")
    done = _cli("roster", "import", str(good), *admin)
    assert (done.returncode, done.stdout) == (0, "3 people: 3 added to the roster, 0 on it already\n"), done.stderr
    done = _cli("roster", "import", str(good), *admin)
    assert done.stdout == "3 people: 0 added to the roster, 3 on it already\n"
    # bob signs in as well: still one bob
    bob = Client(node.url, token("bob", dept), lambda e: None)
    yield bob.start()
    yield bob.stop()
    listed = json.loads(_cli("roster", "list", dept, "--json", *admin).stdout)
    assert sorted(u["user"] for u in listed["users"]) == ["ann", "bob", "cy"]
    done = _cli("roster", "remove", f"{dept}_cy", *admin)
    assert done.stdout == f"removed {dept}_cy from the roster\n"
    done = _cli("roster", "remove", f"{dept}_cy", *admin)
    assert done.stdout == f"{dept}_cy was not on the roster\n"
    listed = json.loads(_cli("roster", "list", dept, "--json", *admin).stdout)
    assert sorted(u["user"] for u in listed["users"]) == ["ann", "bob"]
    text = _cli("roster", "list", dept, *admin).stdout.splitlines()
    assert text[0] == f"{dept}: 2 on the roster"
