"""``deptcast send`` and ``deptcast listen`` (``components.ops.clientcli``) without a node: their
arguments, their tokens, their output lines, and bad input answered with a message (never a
traceback)."""

import subprocess
import sys
from pathlib import Path

import pytest

from components.core.tokens import verify_token
from components.ops.cli import build_parser, main
from components.ops.clientcli import format_envelope, node_urls, token_source

DEPTCAST = str(Path(sys.executable).with_name("deptcast"))
SECRET = "s" * 40
ENVELOPE = {"id": "0000000000000042", "scope": "dept", "target": "cardio", "sender": "pat", "sender_dept": "admin",
            "message": "Ward round at 10:30", "ts": 1767225600000, "seq": 7}


def run(*args, env=None, timeout=60):
    return subprocess.run([DEPTCAST, *args], capture_output=True, text=True, timeout=timeout,
                          env={"PATH": "", **(env or {})})


def args_of(*argv):
    return build_parser().parse_args(["listen", *argv])


def test_urls_from_flags_environment_or_the_local_default():
    assert node_urls(args_of(), {}) == ["ws://localhost:8080/ws"]
    assert node_urls(args_of(), {"DEPTCAST_URL": "ws://lb:8000/ws"}) == ["ws://lb:8000/ws"]
    assert node_urls(args_of("--url", "ws://a:1/ws,ws://b:2/ws", "--url", "ws://c:3/ws"),
                     {"DEPTCAST_URL": "ws://lb/ws"}) == ["ws://a:1/ws", "ws://b:2/ws", "ws://c:3/ws"]
    with pytest.raises(ValueError, match="not a WebSocket URL"):
        node_urls(args_of("--url", "http://a/ws"), {})


def test_token_from_flag_environment_or_minted_on_every_connect(tmp_path):
    assert token_source(args_of("--token", "a.b.c"), {"DEPTCAST_TOKEN": "x.y.z"}) == "a.b.c"
    assert token_source(args_of(), {"DEPTCAST_TOKEN": " x.y.z\n"}) == "x.y.z"
    mint = token_source(args_of("--user", "alice", "--dept", "cardio", "--role", "publisher"),
                        {"DEPTCAST_JWT_SECRET": SECRET, "DEPTCAST_TOKEN": "x.y.z"})
    identity = verify_token(SECRET, mint())
    assert (identity.user, identity.dept, identity.role) == ("alice", "cardio", "publisher")
    (tmp_path / "jwt.secret").write_text("t" * 40)
    mint = token_source(args_of("--user", "bob", "--dept", "onco", "--cbdir", str(tmp_path)), {})
    assert verify_token("t" * 40, mint()).user == "bob"


@pytest.mark.parametrize("argv, env, message", [
    ((), {}, "no token"),
    (("--token", "a.b.c", "--user", "x", "--dept", "y"), {}, "not both"),
    (("--user", "alice"), {"DEPTCAST_JWT_SECRET": SECRET}, "go together"),
    (("--user", "al_ice", "--dept", "cardio"), {"DEPTCAST_JWT_SECRET": SECRET}, "invalid user id"),
    (("--token", "has space"), {}, "not a JWT"),
    (("--token", "x" * 9000), {}, "not a JWT"),
])
def test_token_mistakes_are_explained(argv, env, message):
    with pytest.raises(ValueError, match=message):
        token_source(args_of(*argv), env)


def test_json_lines_are_the_envelope_as_sent():
    assert format_envelope(ENVELOPE, "json") == (
        '{"id": "0000000000000042", "scope": "dept", "target": "cardio", "sender": "pat", '
        '"sender_dept": "admin", "message": "Ward round at 10:30", "ts": 1767225600000, "seq": 7}')
    assert format_envelope({**ENVELOPE, "message": "ü\n\x1b[31m", "new": [1]}, "json").endswith(
        '"message": "ü\\n\\u001b[31m", "ts": 1767225600000, "seq": 7, "new": [1]}')


def test_text_lines_are_readable_and_cannot_drive_the_terminal():
    line = format_envelope(ENVELOPE, "text")
    assert line.endswith("  pat@admin -> cardio: Ward round at 10:30") and line.startswith("20")
    assert format_envelope({**ENVELOPE, "scope": "all", "target": "All"}, "text").endswith("-> All: Ward round at 10:30")
    assert "-> you (cardio_alice):" in format_envelope({**ENVELOPE, "scope": "user", "target": "cardio_alice"}, "text")
    evil = format_envelope({**ENVELOPE, "message": "a\x1b[2Jb\nc\u202e"}, "text")
    assert "\x1b" not in evil and "\n" not in evil and "\u202e" not in evil
    assert "a\\x1b[2Jb\\nc\\u202e" in evil


@pytest.mark.parametrize("argv, message", [
    (["listen", "--history", "-1", "--token", "a.b.c"], "--history"),
    (["listen", "--history", "lots"], "invalid int value"),
    (["listen", "--format", "xml"], "invalid choice"),
    (["listen", "--url", "nonsense", "--token", "a.b.c"], "not a WebSocket URL"),
    (["listen", "--state", "/nonexistent/dir/s", "--token", "a.b.c"], "does not exist"),
    (["send", "--to", "cardio"], "the following arguments are required: message"),
    (["send", "--to", "cardio", "hi"], "no token"),
    (["send", "--to", "cardio", "hi", "--token", "a.b.c", "--timeout", "0"], "--timeout"),
    (["send", "--to", "cardio", "hi", "--user", "alice", "--dept", "cardio", "--cbdir", "/nonexistent"],
     "no JWT secret"),
])
def test_bad_input_gets_a_message_and_no_traceback(argv, message, capsys, monkeypatch):
    for name in ("DEPTCAST_TOKEN", "DEPTCAST_URL", "DEPTCAST_JWT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    try:
        code = main(argv)  # an exception here would be a traceback for the user
    except SystemExit as e:  # argparse's own usage errors
        code = e.code
    printed = capsys.readouterr()
    assert code == 2
    assert message in printed.err and printed.out == ""


def test_a_bad_state_file_is_named_with_its_reason(tmp_path, capsys):
    state = tmp_path / "s"
    state.write_text("[" * 50000)
    assert main(["listen", "--state", str(state), "--token", "a.b.c"]) == 2
    assert f"state file {state}: its JSON nests deeper than 4 levels" in capsys.readouterr().err
    state.write_bytes(b"x" * 100000)
    assert main(["listen", "--state", str(state), "--token", "a.b.c"]) == 2
    assert "a state file has at most 65536" in capsys.readouterr().err


def test_send_to_no_node_says_unavailable_and_fails():
    """Run as a process: the command runs the reactor, and the user must see no traceback."""
    out = run("send", "--to", "cardio", "hi", "--token", "a.b.c", "--url", "ws://127.0.0.1:9/ws", "--timeout", "0.3")
    assert out.returncode == 1, out
    assert out.stderr.strip() == "deptcast send: deptcast.error.unavailable: no deptcast node could be reached in time"
    assert out.stdout == ""
