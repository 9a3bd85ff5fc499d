"""``deptcast send``, ``listen`` and ``receipts`` (``components.ops.clientcli``) without a node:
their arguments, their output lines, a batch file's bad lines, the receipts report, and bad
input answered with a message (never a traceback). Tokens: ``test_clientargs``."""

import subprocess
import sys
from pathlib import Path

import pytest

from twisted.internet import defer

from components.client import errors
from components.ops.cli import build_parser, main
from components.ops.clientargs import node_urls
from components.ops.clientcli import format_envelope, format_receipts, read_receipts, send_items

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


def test_json_lines_are_the_envelope_as_sent():
    assert format_envelope(ENVELOPE, "json") == (
        '{"id": "0000000000000042", "scope": "dept", "target": "cardio", "sender": "pat", '
        '"sender_dept": "admin", "message": "Ward round at 10:30", "ts": 1767225600000, "seq": 7}')
    assert format_envelope({**ENVELOPE, "message": "ü\n\x1b[31m", "new": [1]}, "json").endswith(
        '"message": "ü\\n\\u001b[31m", "ts": 1767225600000, "seq": 7, "new": [1]}')


def test_text_lines_are_readable_and_cannot_drive_the_terminal():
    line = format_envelope(ENVELOPE, "text")
    assert line.endswith("  pat@admin -> cardio: Ward round at 10:30") and line.startswith("20")
    everyone = {**ENVELOPE, "scope": "all", "target": "All"}
    assert format_envelope(everyone, "text").endswith("-> All: Ward round at 10:30")
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
    (["send", "--to", "cardio"], "give --to TO and MESSAGE"),
    (["send", "--to", "cardio", "hi"], "no token"),
    (["send", "--to", "cardio", "hi", "--key", "not a key", "--token-file", "/dev/null"], "1 to 64"),
    (["send", "--batch", "f.jsonl", "--to", "cardio"], "without --to"),
    (["send", "--batch", "/nonexistent.jsonl"], "cannot read /nonexistent.jsonl"),
    (["send", "--batch", "f.jsonl", "--batch-size", "1001"], "--batch-size"),
    (["receipts"], "the following arguments are required: id"),
    (["revoke", "cardio-bob", "--token-file", "/dev/null"], "not a user key"),
    (["roster", "remove", "a_b_c", "--token-file", "/dev/null"], "not a user key"),
    (["roster", "list", "All", "--token-file", "/dev/null"], "not a department code"),
    (["roster", "import", "/nonexistent.csv"], "cannot read /nonexistent.csv"),
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
    out = run("send", "--to", "cardio", "hi", "--url", "ws://127.0.0.1:9/ws", "--timeout", "0.3",
              env={"DEPTCAST_TOKEN": "a.b.c"})
    assert out.returncode == 1, out
    assert out.stderr.strip() == "deptcast send: deptcast.error.unavailable: no deptcast node could be reached in time"
    assert out.stdout == ""


def test_a_token_on_the_command_line_is_warned_about_once():
    out = run("send", "--to", "cardio", "hi", "--token", "a.b.c", "--url", "ws://127.0.0.1:9/ws", "--timeout", "0.3")
    assert out.returncode == 1, out
    warning, refusal = out.stderr.strip().split("\n")
    assert warning.startswith("deptcast: warning: --token puts the token on the command line, where other local "
                              "users can read it")
    assert refusal.startswith("deptcast send: deptcast.error.unavailable")


def test_a_batch_file_with_bad_lines_sends_nothing_and_names_them(tmp_path):
    batch = tmp_path / "shift.jsonl"
    batch.write_text('{"to": "cardio", "message": "ok"}\n'
                     '\n'
                     '{"to": "cardio", "mesage": "typo"}\n'
                     'not json\n'
                     '{"to": "card_io_x", "message": "m"}\n'
                     '{"to": "cardio", "message": "m", "key": "has space"}\n')
    # a node that is not there: the command must stop before it tries one
    out = run("send", "--batch", str(batch), "--url", "ws://127.0.0.1:9/ws", "--timeout", "30",
              env={"DEPTCAST_TOKEN": "a.b.c"}, timeout=20)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.splitlines() == [
        f"{batch}:3: unknown field 'mesage' (an item has to, message, key)",
        f"{batch}:4: not JSON (Expecting value at position 0)",
        f"{batch}:5: 'to' is not a valid user key <dept>_<user>: 'card_io_x'",
        f"{batch}:6: the key is not 1 to 64 letters, digits, '-', '_' or '.'",
        f"deptcast: {batch}: 4 bad lines; nothing was sent"]


class BatchNode:
    """A client whose send_batch answers as a node would: refusing what goes to onco."""

    def __init__(self, fail_at=None):
        self.calls = []
        self.fail_at = fail_at

    async def send_batch(self, items, timeout):
        self.calls.append(items)
        if len(self.calls) == self.fail_at:
            raise errors.Unavailable("the store is down")
        return [{"error": "deptcast.error.not_authorized", "detail": "not onco"} if i["to"] == "onco"
                else {"id": f"{len(self.calls)}-{n}", "message": i["message"]} for n, i in enumerate(i for i in items)]


def test_a_batch_is_sent_in_chunks_with_progress_and_each_refusal_named(capsys):
    items = [(n + 1, {"to": "onco" if n in (2, 7) else "cardio", "message": f"m{n}"}) for n in range(10)]
    node = BatchNode()
    code = defer.ensureDeferred(send_items(node, "f.jsonl", items, 4, 30)).result
    out = capsys.readouterr()
    assert code == 1 and [len(c) for c in node.calls] == [4, 4, 2]
    assert out.out == "10 notices: 8 sent, 2 refused\n"
    assert out.err.splitlines() == [
        "f.jsonl:3: deptcast.error.not_authorized: not onco", "deptcast send: 4 of 10 done",
        "f.jsonl:8: deptcast.error.not_authorized: not onco", "deptcast send: 8 of 10 done",
        "deptcast send: 10 of 10 done"]
    code = defer.ensureDeferred(send_items(BatchNode(), "f.jsonl", items[:2], 1000, 30)).result
    out = capsys.readouterr()
    assert code == 0 and out.out == "2 notices: 2 sent, 0 refused\n" and out.err == ""   # one batch: no progress


def test_a_batch_refused_whole_stops_and_says_what_was_not_sent(capsys):
    items = [(n + 10, {"to": "cardio", "message": f"m{n}"}) for n in range(10)]
    code = defer.ensureDeferred(send_items(BatchNode(fail_at=2), "f.jsonl", items, 4, 30)).result
    out = capsys.readouterr()
    assert code == 1
    assert out.out == "10 notices: 4 sent, 0 refused; lines 14 to 19 were not sent\n"
    assert "deptcast send: deptcast.error.unavailable: the store is down" in out.err


# -- receipts


class ReceiptsNode:
    def __init__(self):
        self.pages = {
            "seen": [{"users": [{"dept": "cardio", "user": "bob", "at": 1767225600000}], "next": "c1"},
                     {"users": [{"dept": "cardio", "user": "eve", "at": 1767225660000}], "next": None}],
            "delivered": [{"users": [{"dept": "cardio", "user": "ann", "at": 1767225601000}], "next": None}],
            "pending": [{"users": [{"dept": "cardio", "user": "zed\x1b[2J"}], "next": None}]}
        self.asked = []

    async def receipts(self, envelope_id):
        return {"id": envelope_id, "audience": 4, "seen": 2, "delivered": 1, "pending": 1}

    async def recipients(self, envelope_id, state, after=None, limit=200):
        self.asked.append((state, after))
        return self.pages[state][0 if after is None else 1]


def test_receipts_pages_every_state_to_its_end():
    node = ReceiptsNode()
    report = defer.ensureDeferred(read_receipts(node, "0000000000000042")).result
    assert node.asked == [("seen", None), ("seen", "c1"), ("delivered", None), ("pending", None)]
    assert [u["user"] for u in report["seen"]] == ["bob", "eve"]
    assert report["receipts"]["audience"] == 4
    text = format_receipts(report)
    lines = text.splitlines()
    assert lines[0] == ("notice 0000000000000042: 4 in its audience; seen by 2, delivered to 1 more who have not "
                        "seen it, 1 have neither")
    assert lines[1] == "seen (when): 2" and lines[2].startswith("  cardio_bob ") and lines[2].endswith(
        __import__("time").strftime("%Y-%m-%d %H:%M:%S", __import__("time").localtime(1767225600)))
    assert lines[4] == "delivered, not seen yet (when): 1"
    assert lines[6:] == ["neither delivered nor seen: 1", "  cardio_zed\\x1b[2J"]


def test_a_cursor_that_repeats_ends_the_paging():
    node = ReceiptsNode()
    node.pages["seen"][1]["next"] = "c1"
    report = defer.ensureDeferred(read_receipts(node, "1")).result
    assert len(report["seen"]) == 2
