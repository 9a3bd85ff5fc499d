"""The code samples of the docs and the README, collected and run as a reader would run them.

Sybil's Markdown lexers find the fenced code blocks (indented ones in lists too) and the
``<!-- skip: next "why" -->`` comments; this module decides what each block is and runs it:

- ``console``: a terminal session. Each ``$ `` line is a command (a line ending in ``\\`` goes on
  to the next), the lines after it its expected output (standard output and error together).
  All commands of a block run in one bash, one after the other; exported variables carry over
  to the page's later samples.
- ``python``: a script, run in a fresh interpreter; it must exit 0. When the next block is
  ``text title="Output"``, its standard output must match that block.
- ``sh``: commands without output, run with ``set -e``; they must exit 0.
- the languages of :data:`NOT_RUN` are shown, not run (each with its reason).

Expected output matches line by line: ``...`` in a line stands for any text, a line that is only
``...`` for any number of lines, and a line holding a JSON object compares as JSON, with the
values of :data:`VOLATILE` compared by type only. The samples name the quick-start node's address
(:data:`QUICKSTART_ADDRESS`); a page's :class:`PageState` puts the test node's address in its
place, in the commands and in the expected output alike.
"""

import ast
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from sybil import Document
from sybil.evaluators.skip import Skipper
from sybil.parsers.markdown import SkipParser
from sybil.parsers.markdown.lexers import FencedCodeBlockLexer

#: the address the samples name: the node ``scripts/quickstart`` starts
QUICKSTART_ADDRESS = "localhost:8080"
#: the info string of a block that holds the previous Python sample's expected output
OUTPUT_INFO = 'text title="Output"'
#: languages that run
RUN = ("console", "python", "sh")
#: languages shown, not run, and why
NOT_RUN = {
    "ini": "a systemd unit: it needs systemd and a host of its own",
    "yaml": "a Prometheus scrape configuration, read by Prometheus",
    "json": "a sample answer; the console samples beside it ask a real node for the real one",
    "js": "the page's JavaScript runs in a browser: tests/browser/ runs the page itself",
    "text": "log lines and sample output, shown as they look",
}
#: envelope fields that differ from run to run: compared by type only
VOLATILE = ("id", "ts", "seq")
#: seconds one block may run
TIMEOUT = 120
#: what separates the outputs of a console block's commands
_MARK = "--- deptcast docs sample: next command ---"
#: shell variables that are bash's own, not the reader's
_SHELL_OWN = {"_", "SHLVL", "PWD", "OLDPWD"}


@dataclass
class Sample:
    """One fenced code block of a page."""

    path: Path
    line: int
    language: str
    source: str
    #: why it is not run (a skip comment before it), or ``None``
    skip: Optional[str] = None
    #: for a Python sample: the standard output it must print, if the page shows it
    output: Optional[str] = None

    @property
    def id(self) -> str:
        return f"{self.path.name}:{self.line}"


@dataclass
class PageState:
    """What a page's samples share, as a reader's terminal would: the environment, a working
    directory, and the address of the node they run against."""

    env: Dict[str, str]
    cwd: Path
    address: str = QUICKSTART_ADDRESS
    #: every command run so far, for failure messages
    history: List[str] = field(default_factory=list)
    #: the samples run (or tried) in this state, by id
    ran: Set[str] = field(default_factory=set)

    def localise(self, text: str) -> str:
        return text.replace(QUICKSTART_ADDRESS, self.address)


class _Blocks:
    """A Sybil parser: every fenced code block, whatever its info string (``""`` for none)."""

    def __init__(self) -> None:
        self.lexer = FencedCodeBlockLexer(language=r"[^\n]*", mapping={"language": "info", "source": "source"})

    def __call__(self, document: Document):
        for region in self.lexer(document):
            region.parsed = (region.lexemes["info"].strip(), str(region.lexemes["source"]))
            region.evaluator = None  # run by run_sample, not by Sybil
            yield region


def collect(path: Path) -> Tuple[List[Sample], List[str]]:
    """The samples of a page, in order, and what is wrong with its blocks.

    :rtype: tuple
    """
    document = Document.parse(str(path), _Blocks(), SkipParser())
    samples: List[Sample] = []
    problems: List[str] = []
    pending_skip: Optional[str] = None
    previous: Optional[Sample] = None
    for example in document.examples():
        where = f"{path.name}:{example.line}"
        parsed = example.parsed
        if isinstance(example.region.evaluator, Skipper):
            action, reason = parsed
            if action != "next" or not reason:
                problems.append(f'{where}: write a skip as <!-- skip: next "why it is not run" -->')
                continue
            pending_skip = ast.literal_eval(reason.strip())
            continue
        info, source = parsed
        language = info.split()[0] if info else ""
        if info == OUTPUT_INFO:
            if previous is None or previous.language != "python" or previous.output is not None:
                problems.append(f"{where}: an Output block belongs right after a python sample")
            else:
                previous.output = source
            previous = None
            continue
        if not language:
            problems.append(f"{where}: a code block needs a language (one of {', '.join(RUN + tuple(NOT_RUN))})")
        elif language not in RUN and language not in NOT_RUN:
            problems.append(f"{where}: the language {language!r} is neither run nor listed in NOT_RUN")
        elif language in RUN:
            previous = Sample(path, example.line, language, source, skip=pending_skip)
            samples.append(previous)
            pending_skip = None
            continue
        if pending_skip is not None:
            problems.append(f"{where}: a skip comment before a block that never runs")
            pending_skip = None
        previous = None
    if pending_skip is not None:
        problems.append(f"{path.name}: a skip comment with no sample after it")
    return samples, problems


# -- running


def run_in_page(sample: Sample, page: Sequence[Sample], state: PageState) -> None:
    """Run ``sample`` in ``state`` after the samples of its ``page`` before it that have not
    run there yet: a sample relies on what they did (an exported token, a file), also when it
    runs alone (``pytest -k``, a rerun of what failed).

    :raises AssertionError: saying what the sample, or an earlier one it needs, expected and
        what happened
    """
    for earlier in page:
        if earlier is sample:
            break
        if earlier.skip or earlier.id in state.ran:
            continue
        state.ran.add(earlier.id)
        try:
            run_sample(earlier, state)
        except AssertionError as e:
            raise AssertionError(f"{sample.id} needs the page's earlier sample {earlier.id}, which failed:\n{e}") \
                from None
    state.ran.add(sample.id)
    run_sample(sample, state)


def run_sample(sample: Sample, state: PageState) -> None:
    """Run ``sample`` as its page says, in ``state``.

    :raises AssertionError: saying what the sample expected and what happened
    """
    if sample.language == "console":
        _run_console(sample, state)
    elif sample.language == "python":
        _run_python(sample, state)
    elif sample.language == "sh":
        _run_shell(sample, state)
    else:  # pragma: no cover (collect lets only RUN through)
        raise AssertionError(f"{sample.id}: cannot run {sample.language}")


def parse_console(source: str) -> List[Tuple[str, List[str]]]:
    """A console block as (command, expected output lines) pairs.

    :rtype: list
    """
    commands: List[Tuple[str, List[str]]] = []
    lines = source.rstrip("\n").split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.startswith("$ "):
            if not commands:
                raise AssertionError(f"a console sample starts with a command ('$ ...'), not {line!r}")
            commands[-1][1].append(line)
            i += 1
            continue
        command = [line[2:]]
        while command[-1].endswith("\\") and i + 1 < len(lines):
            i += 1
            command.append(lines[i])
        commands.append(("\n".join(command), []))
        i += 1
    return commands


def _run_console(sample: Sample, state: PageState) -> None:
    commands = [(state.localise(c), [state.localise(x) for x in out]) for c, out in parse_console(sample.source)]
    script = ["exec 2>&1"]
    for command, _ in commands:
        script += [command, f"printf '\\n%s\\n' '{_MARK}'"]
    output = _bash(sample, state, "\n".join(script), strict=False)
    parts = output.split(f"\n{_MARK}\n")
    for n, (command, expected) in enumerate(commands):
        actual = _lines(parts[n] if n < len(parts) else "")
        if not lines_match(expected, actual):
            raise AssertionError(_mismatch(sample, f"$ {command}", expected, actual))


def _run_shell(sample: Sample, state: PageState) -> None:
    _bash(sample, state, "exec 2>&1\n" + state.localise(sample.source), strict=True)


def _bash(sample: Sample, state: PageState, script: str, strict: bool) -> str:
    """Run ``script`` in bash in the page's state; keep the variables it exports."""
    env_file = state.cwd / ".sample-env"
    body = ("set -e\n" if strict else "") + script
    wrapped = f"{body}\nstatus=$?\nenv -0 > {_quote(str(env_file))}\nexit $status\n"
    state.history.append(script)
    try:
        done = subprocess.run(["bash", "-c", wrapped], cwd=state.cwd, env=state.env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"{sample.id}: still running after {TIMEOUT} s:\n{e.output}") from None
    if strict and done.returncode != 0:
        raise AssertionError(f"{sample.id}: exited {done.returncode}:\n{done.stdout}")
    if env_file.exists():
        state.env = {k: v for k, _, v in (item.partition("=") for item in env_file.read_text().split("\0") if item)
                     if k not in _SHELL_OWN}
        env_file.unlink()
    return done.stdout


def _run_python(sample: Sample, state: PageState) -> None:
    script = state.cwd / f"sample_{sample.path.stem}_{sample.line}.py"
    script.write_text(state.localise(sample.source))
    try:
        done = subprocess.run([sys.executable, script.name], cwd=state.cwd, env=state.env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"{sample.id}: still running after {TIMEOUT} s:\n{e.stdout}\n{e.stderr}") from None
    if done.returncode != 0:
        raise AssertionError(f"{sample.id}: exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    if sample.output is not None:
        expected = [state.localise(x) for x in _lines(sample.output)]
        actual = _lines(done.stdout)
        if not lines_match(expected, actual):
            raise AssertionError(_mismatch(sample, "its standard output", expected, actual))


# -- comparing


def lines_match(expected: List[str], actual: List[str]) -> bool:
    """Whether ``actual`` is what ``expected`` describes (see the module's docstring).

    :rtype: bool
    """
    if not expected:
        return not actual
    head, rest = expected[0], expected[1:]
    if head.strip() == "...":
        return any(lines_match(rest, actual[i:]) for i in range(len(actual) + 1))
    return bool(actual) and line_matches(head, actual[0]) and lines_match(rest, actual[1:])


def line_matches(expected: str, actual: str) -> bool:
    """Whether one line of output is the one expected.

    :rtype: bool
    """
    if expected == actual:
        return True
    wanted = _json_object(expected)
    if wanted is not None:
        got = _json_object(actual)
        return got is not None and _json_matches(wanted, got)
    if "..." in expected:
        pattern = ".*".join(re.escape(part) for part in expected.split("..."))
        return re.fullmatch(pattern, actual, re.S) is not None
    return False


def _json_object(line: str) -> Optional[Dict[str, Any]]:
    if not line.startswith("{"):
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _json_matches(expected: Dict[str, Any], actual: Dict[str, Any]) -> bool:
    if list(expected) != list(actual):
        return False
    for key, value in expected.items():
        if key in VOLATILE or value == "...":
            if type(value) is not type(actual[key]) and value != "...":
                return False
        elif value != actual[key]:
            return False
    return True


def _lines(text: str) -> List[str]:
    lines = [line.rstrip() for line in text.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return lines


def _mismatch(sample: Sample, what: str, expected: List[str], actual: List[str]) -> str:
    return (f"{sample.path}:{sample.line}: {what} printed\n" + "\n".join(f"    {line}" for line in actual)
            + "\nwhere the page shows\n" + "\n".join(f"    {line}" for line in expected))


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def base_env(url: str, secret: str) -> Dict[str, str]:
    """The environment a page's samples start with: this environment's commands first on the
    ``PATH``, a node's URL and secret, and no other ``DEPTCAST_`` variable.

    :rtype: dict
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPTCAST_") and k != "PYTHONPATH"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"  # output in the order it was written, as on a terminal
    env["DEPTCAST_URL"] = url
    env["DEPTCAST_JWT_SECRET"] = secret
    return env
