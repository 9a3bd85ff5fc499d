"""``deptcast run``: a node that comes back by itself.

When one of a Crossbar node's workers dies (a crash, an out-of-memory kill), Crossbar's
default ``shutdown_on_worker_exit`` ends the whole node, and Crossbar never restarts a
worker. So a node is run under this small supervisor: it runs ``crossbar start`` and starts
it again whenever it exits without having been asked to stop, after a short delay that grows
while the node keeps failing soon after its start (so a node that cannot start does not spin).
SIGTERM and SIGINT are passed on to the node, which stops cleanly (it drains its clients
first), and then the supervisor exits with the node's exit code. SIGHUP restarts the node at
once (stopped as by SIGTERM, started again without delay): ``kill -HUP $(cat
<cbdir>/deptcast-run.pid)`` is a node restart, e.g. for ``deptcast cluster restart`` on one
machine.

What the node prints (see :mod:`components.ops.nodelog`): by default deptcast's own lines and
every warning and error; ``--loglevel`` shows Crossbar's internals at that level as
``crossbar start`` would; ``--log-format json`` writes one JSON object per line.
"""

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence

from components.core.settings import DEFAULT_NODE_DIR
from components.ops import nodelog
from components.ops.process import CROSSBAR

#: the supervisor's process id, in the node directory (for SIGHUP from scripts)
PID_FILE = "deptcast-run.pid"

#: seconds before the first restart; doubled after each failure that came soon after a start
FIRST_DELAY = 0.5
MAX_DELAY = 30.0
#: a node that ran this long before it exited restarts after FIRST_DELAY again
STABLE_AFTER = 60.0


@dataclass
class Backoff:
    """The delay before the next restart (pure: the caller passes the run time)."""

    first: float = FIRST_DELAY
    most: float = MAX_DELAY
    stable_after: float = STABLE_AFTER
    current: float = FIRST_DELAY

    def after_run(self, seconds: float) -> float:
        """The delay to wait after a run of ``seconds``.

        :rtype: float
        """
        if seconds >= self.stable_after:
            self.current = self.first
        delay = self.current
        self.current = min(self.most, self.current * 2)
        return delay


class Supervisor:
    """Runs ``crossbar start --cbdir <cbdir> <args>`` until asked to stop.

    :param say: where the supervisor's own lines go (standard error by default)
    """

    def __init__(self, cbdir: Path, args: Sequence[str] = (), say: Optional[Callable[[str], None]] = None,
                 backoff: Optional[Backoff] = None, command: Optional[Sequence[str]] = None) -> None:
        self.cbdir = Path(cbdir)
        self.args: List[str] = list(args)
        #: how the node is started (``--cbdir`` and the args follow); default ``crossbar start``
        self.command: List[str] = list(command or [CROSSBAR, "start"])
        self._restart_requested = False
        self._say = say or (lambda line: print(line, file=sys.stderr, flush=True))
        self._backoff = backoff or Backoff()
        self._stop_signal: Optional[int] = None
        self._child: Optional[subprocess.Popen] = None
        self.restarts = 0

    def _on_signal(self, signum, frame) -> None:
        if signum == signal.SIGHUP:
            self._restart_requested = True
            signum = signal.SIGTERM
        else:
            self._stop_signal = signum
        if self._child is not None and self._child.poll() is None:
            self._child.send_signal(signal.SIGTERM if signum == signal.SIGINT else signum)

    def run(self) -> int:
        """Run the node until a signal asks it to stop; return the node's last exit code.

        :rtype: int
        """
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        pid_file = self.cbdir / PID_FILE
        try:
            pid_file.write_text(f"{os.getpid()}\n")
        except OSError as e:
            self._say(f"deptcast run: cannot write {pid_file} ({e}); SIGHUP still restarts the node")
        try:
            while True:
                started = time.monotonic()
                self._child = subprocess.Popen([*self.command, "--cbdir", str(self.cbdir), *self.args])
                code = self._wait(self._child)
                if self._stop_signal is not None:
                    return code
                if self._restart_requested:
                    self._restart_requested = False
                    self.restarts += 1
                    self._say(f"deptcast run: SIGHUP: the node stopped (code {code}); starting it again now "
                              f"(restart {self.restarts})")
                    continue
                ran = time.monotonic() - started
                delay = self._backoff.after_run(ran)
                self.restarts += 1
                self._say(f"deptcast run: the node exited (code {code}) after {ran:.1f} s; "
                          f"starting it again in {delay:g} s (restart {self.restarts})")
                deadline = time.monotonic() + delay
                while self._stop_signal is None and time.monotonic() < deadline:
                    time.sleep(0.05)
                if self._stop_signal is not None:
                    return code
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            try:
                if pid_file.read_text().strip() == str(os.getpid()):
                    pid_file.unlink()
            except OSError:
                pass

    @staticmethod
    def _wait(child: subprocess.Popen) -> int:
        while True:
            try:
                return child.wait()
            except InterruptedError:  # pragma: no cover - PEP 475 retries, but be safe
                continue


def node_command(loglevel: Optional[str], log_format: str) -> List[str]:
    """How ``deptcast run`` starts the node: ``crossbar start`` itself when Crossbar's own text
    output at ``loglevel`` is asked for, else through :mod:`components.ops.nodelog` (the quiet
    start, or JSON lines).

    :rtype: list
    """
    if loglevel and log_format == nodelog.TEXT:
        return [CROSSBAR, "start", "--loglevel", loglevel]
    mode = nodelog.ALL if loglevel else nodelog.QUIET
    return [sys.executable, "-m", "components.ops.nodelog", "--mode", mode, "--format", log_format,
            "--loglevel", loglevel or "info", "--", "start"]


def _cmd_run(args) -> int:
    extra = list(args.crossbar_args)
    if extra[:1] == ["--"]:
        extra = extra[1:]
    return Supervisor(Path(args.cbdir), extra, command=node_command(args.loglevel, args.log_format)).run()


def add_cli(sub) -> None:
    """Add ``deptcast run`` to the command line."""
    run = sub.add_parser("run", help="run a node and start it again whenever it stops by itself",
                         description="Run `crossbar start --cbdir DIR` and start it again when it exits "
                                     "without being asked to (a crashed worker ends a Crossbar node). "
                                     "SIGTERM/SIGINT stop it cleanly.")
    run.add_argument("--cbdir", default=DEFAULT_NODE_DIR, help=f"the node directory (default {DEFAULT_NODE_DIR})")
    run.add_argument("--loglevel", help="show Crossbar's internals at this level (info, debug, trace, warn, error) "
                                        "as `crossbar start` does; by default only deptcast's own lines and every "
                                        "warning and error are shown")
    run.add_argument("--log-format", choices=(nodelog.TEXT, nodelog.JSON), default=nodelog.TEXT,
                     help="text (default) or json: one JSON object per line (time, level, process, namespace, text)")
    run.add_argument("crossbar_args", nargs=argparse.REMAINDER,
                     help="further `crossbar start` arguments, after --, e.g. -- --config config.local.json")
    run.set_defaults(func=_cmd_run)
