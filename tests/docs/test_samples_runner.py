"""The sample runner of :mod:`tests.docs.samples` on small pages of its own: a sample that is
wrong fails, a page whose blocks say nothing about how they run is refused."""

import os
import sys
from pathlib import Path

import pytest

from tests.docs.samples import PageState, base_env, collect, line_matches, lines_match, run_in_page, run_sample

FENCE = "```"


def page(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "page.md"
    path.write_text(text.replace("'''", FENCE))
    return path


def run_page(tmp_path: Path, text: str, address: str = "localhost:8080") -> PageState:
    samples, problems = collect(page(tmp_path, text))
    assert problems == []
    state = PageState(base_env("ws://localhost:8080/ws", "s" * 32), tmp_path, address=address)
    for sample in samples:
        run_sample(sample, state)
    return state


def test_a_console_sample_runs_and_its_output_is_checked(tmp_path):
    run_page(tmp_path, "'''console\n$ echo hello; echo oops >&2\nhello\noops\n$ true\n'''\n")
    with pytest.raises(AssertionError, match="where the page shows\n    goodbye"):
        run_page(tmp_path, "'''console\n$ echo hello\ngoodbye\n'''\n")
    with pytest.raises(AssertionError, match="printed\n    hello"):
        run_page(tmp_path, "'''console\n$ echo hello\n'''\n")  # output the page does not show


def test_a_command_may_go_on_over_lines_and_exports_carry_over_to_later_samples(tmp_path):
    run_page(tmp_path, "'''console\n$ export GREETING=$(echo \\\n  hi)\n'''\n\n"
                       "'''python\nimport os\nprint(os.environ['GREETING'])\n'''\n\n"
                       "'''text title=\"Output\"\nhi\n'''\n")


def test_a_sample_run_alone_runs_the_earlier_samples_of_its_page_first(tmp_path):
    """A sample that uses what an earlier one exported (the docs' token) passes when it runs
    by itself, as ``pytest -k`` or a rerun of what failed runs it; each earlier one runs once."""
    samples, problems = collect(page(tmp_path, "'''console\n$ export TOKEN=$(echo t0k3n)\n'''\n\n"
                                               "'''sh\necho once >> ran\n'''\n\n"
                                               "'''console\n$ echo \"${TOKEN:-no token}\"\nt0k3n\n'''\n"))
    assert problems == []
    last = samples[-1]
    with pytest.raises(AssertionError, match="printed\n    no token"):
        run_sample(last, PageState(base_env("ws://localhost:8080/ws", "s" * 32), tmp_path))
    state = PageState(base_env("ws://localhost:8080/ws", "s" * 32), tmp_path)
    run_in_page(last, samples, state)
    run_in_page(last, samples, state)
    assert (tmp_path / "ran").read_text() == "once\n" and state.ran == {s.id for s in samples}
    # an earlier sample that fails is named
    broken, problems = collect(page(tmp_path, "'''sh\nfalse\n'''\n\n'''sh\ntrue\n'''\n"))
    with pytest.raises(AssertionError, match=r"page.md:\d+ needs the page's earlier sample page.md:1, which failed"):
        run_in_page(broken[1], broken, PageState(base_env("ws://localhost:8080/ws", "s" * 32), tmp_path))


def test_a_python_sample_must_exit_0_and_print_what_the_page_shows(tmp_path):
    with pytest.raises(AssertionError, match="exited 1"):
        run_page(tmp_path, "'''python\nraise SystemExit(1)\n'''\n")
    with pytest.raises(AssertionError, match="standard output printed\n    2"):
        run_page(tmp_path, "'''python\nprint(1 + 1)\n'''\n\n'''text title=\"Output\"\n3\n'''\n")
    run_page(tmp_path, "'''python\nprint(1 + 1)\n'''\n\n'''text title=\"Output\"\n2\n'''\n")


def test_a_shell_sample_stops_at_its_first_failing_command(tmp_path):
    with pytest.raises(AssertionError, match="exited 1"):
        run_page(tmp_path, "'''sh\nfalse\ntouch ran-on\n'''\n")
    assert not (tmp_path / "ran-on").exists()


def test_the_quick_start_address_becomes_the_test_nodes(tmp_path):
    run_page(tmp_path, "'''console\n$ echo http://localhost:8080/health\nhttp://localhost:8080/health\n'''\n",
             address="127.0.0.1:5555")
    with pytest.raises(AssertionError, match="127.0.0.1:5555"):
        run_page(tmp_path, "'''console\n$ echo localhost:8080\nlocalhost:9999\n'''\n", address="127.0.0.1:5555")


def test_what_a_line_of_expected_output_may_leave_open():
    assert line_matches("deptcast listen: connected to ... as cardio_alice",
                        "deptcast listen: connected to vm-1 as cardio_alice")
    assert not line_matches("deptcast listen: connected to ... as cardio_alice",
                            "deptcast listen: connected to vm-1 as cardio_bob")
    # an envelope: id, ts and seq by type, everything else exactly, keys in order
    shown = '{"id": "0000000000000001", "message": "hi", "ts": 1, "seq": 1}'
    assert line_matches(shown, '{"id": "0000000000000042", "message": "hi", "ts": 1795733674173, "seq": 7}')
    assert not line_matches(shown, '{"id": "0000000000000042", "message": "ho", "ts": 1, "seq": 1}')
    assert not line_matches(shown, '{"id": 42, "message": "hi", "ts": 1, "seq": 1}')
    assert not line_matches(shown, '{"message": "hi", "id": "0000000000000001", "ts": 1, "seq": 1}')
    assert not line_matches(shown, '{"id": "0000000000000001", "message": "hi", "ts": 1, "seq": 1, "x": 0}')
    # a line of its own that is only "..." stands for any number of lines
    assert lines_match(["a", "...", "d"], ["a", "b", "c", "d"]) and lines_match(["a", "...", "d"], ["a", "d"])
    assert not lines_match(["a", "...", "d"], ["a", "b", "c"])


@pytest.mark.parametrize("text, problem", [
    ("'''\nls\n'''\n", "needs a language"),
    ("'''brainfuck\n+\n'''\n", "neither run nor listed"),
    ("<!-- skip: next -->\n'''sh\nls\n'''\n", "why it is not run"),
    ("<!-- skip: start -->\n'''sh\nls\n'''\n", "why it is not run"),
    ("'''text title=\"Output\"\nhi\n'''\n", "right after a python sample"),
    ("<!-- skip: next \"it is JSON\" -->\n'''json\n{}\n'''\n", "a block that never runs"),
    ("'''sh\nls\n'''\n<!-- skip: next \"nothing follows\" -->\n", "no sample after it"),
])
def test_a_page_says_how_each_block_runs(tmp_path, text, problem):
    samples, problems = collect(page(tmp_path, text))
    assert len(problems) == 1 and problem in problems[0], problems


def test_a_skip_comment_gives_its_reason_to_the_next_sample_only(tmp_path):
    samples, problems = collect(page(tmp_path, "<!-- skip: next \"needs systemd\" -->\n'''sh\nsystemctl\n'''\n\n"
                                               "'''sh\ntrue\n'''\n"))
    assert problems == [] and [s.skip for s in samples] == ["needs systemd", None]


def test_samples_run_with_this_environments_commands():
    env = base_env("ws://x/ws", "s" * 32)
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    assert not any(k.startswith("DEPTCAST_") for k in env if k not in ("DEPTCAST_URL", "DEPTCAST_JWT_SECRET"))
