"""The README's first command, run for real: ``scripts/quickstart`` in this checkout, with
open mode on (``DEPTCAST_LEGACY_OPEN=1``), whose warning must show in the quiet start."""

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import threads

from tests.support.nodes import REPO, free_port, wait_until
from tests.support.wamp import connect, wait_for

DEPTCAST = str(Path(sys.executable).with_name("deptcast"))
#: the line a node logs once it serves
READY = "is ready: page http://"


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    port = free_port()
    log_path = tmp_path_factory.mktemp("quickstart") / "quickstart.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPTCAST_")}
    env["DEPTCAST_PORT"] = str(port)
    env["DEPTCAST_LEGACY_OPEN"] = "1"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([str(REPO / "scripts" / "quickstart")], stdout=log, stderr=subprocess.STDOUT,
                                env=env, cwd=str(REPO), start_new_session=True)
    try:
        wait_until(lambda: proc.poll() is not None or READY in log_path.read_text(), 300, "the quick-start node")
        assert proc.poll() is None, log_path.read_text()[-3000:]
        yield port, log_path
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_generates_a_secret_once_and_says_so_without_printing_it(quickstart):
    port, log_path = quickstart
    secret_file = REPO / ".crossbar" / "jwt.secret"
    secret = secret_file.read_text().strip()
    log = log_path.read_text()
    assert "quick-start mode" in log and str(secret_file) in log
    assert secret not in log
    assert "Traceback" not in log and "NumPy" not in log
    ignored = subprocess.run(["git", "check-ignore", "-q", str(secret_file)], cwd=REPO)
    assert ignored.returncode == 0, "the secret file must be ignored by git"


def test_a_quiet_start_says_what_a_person_needs_and_keeps_warnings(quickstart):
    port, log_path = quickstart
    lines = log_path.read_text().splitlines()
    before_ready = lines[:next(i for i, line in enumerate(lines) if READY in line) + 1]
    print(f"\n{len(before_ready)} lines up to the ready line:\n" + "\n".join(before_ready))
    assert len(before_ready) < 40
    ready = before_ready[-1]
    # where to connect, the mode, the store, the links
    for words in (f"page http://localhost:{port}/", f"WAMP ws://localhost:{port}/ws",
                  f"legacy ws://localhost:{port}/webSocket/<dept>_<user>", f"health http://localhost:{port}/health",
                  "quick-start mode", "store sqlite ", "links: none"):
        assert words in ready, words
    # warnings are not hidden: open mode's, and quick-start mode's
    assert any("OPEN MODE (DEPTCAST_LEGACY_OPEN=1)" in line for line in before_ready)
    assert any("quick-start sign-in is ON" in line for line in before_ready)
    # Crossbar's internals are not shown unless asked for (deptcast run --loglevel info)
    text = "\n".join(before_ready)
    assert "RouterFactory.add_role" not in text and "new session attached" not in text
    assert ":::::" not in text  # the banner


def test_serves_the_page(quickstart):
    port, _ = quickstart
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
        assert r.status == 200 and b"deptcast" in r.read()


@pytest_twisted.inlineCallbacks
def test_cli_token_works_against_the_node(quickstart):
    port, _ = quickstart
    out = yield threads.deferToThread(
        subprocess.run, [DEPTCAST, "token", "--user", "qs-alice", "--dept", "qs-dept"],
        capture_output=True, text=True, cwd=str(REPO), timeout=60,
        env={k: v for k, v in os.environ.items() if k != "DEPTCAST_JWT_SECRET"})
    assert out.returncode == 0, out.stderr
    client = yield connect(f"ws://127.0.0.1:{port}/ws", out.stdout.strip())
    yield client.listen("deptcast.dept.qs-dept")
    envelope = yield client.call("deptcast.send", "qs-dept", "quick start works")
    yield wait_for(lambda: client.events["deptcast.dept.qs-dept"])
    assert client.events["deptcast.dept.qs-dept"] == [envelope]
    yield client.close()


def _post_json(url, body):
    import json
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_dev_sign_in_mints_valid_tokens_and_refuses_bad_input(quickstart):
    from components.core.tokens import verify_token
    port, _ = quickstart
    url = f"http://127.0.0.1:{port}/dev/token"
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.status == 200 and r.read() == b'{"dev": true}'
    status, body = _post_json(url, {"user": "devuser", "dept": "devdept", "role": "publisher"})
    assert status == 200
    secret = (REPO / ".crossbar" / "jwt.secret").read_text().strip()
    identity = verify_token(secret, body["token"])
    assert (identity.user, identity.dept, identity.role) == ("devuser", "devdept", "publisher")
    status, body = _post_json(url, {"user": "bad user", "dept": "devdept"})
    assert status == 400 and body["error"] == "deptcast.error.invalid_frame"
