"""A Crossbar node run as a child process: start it, know when it serves (it asks the node's
``/health``), stop it and every worker it started. Used by ``deptcast cluster demo`` and by the
tests."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from components.ops.probe import Health, get_health, node_address

#: what a node logs as it starts (at Crossbar's info level): its components are ready, then
#: Crossbar has opened the transports. Readiness is asked of ``/health``, not read from these.
READY_LINES = ("deptcast auth: authorizer ready",
               "deptcast api: send and history ready",
               "deptcast api: store ready",
               "deptcast presence: online and presence events ready",
               "deptcast bridge: the web transport's session is ready",
               "local node configuration ran successfully")
#: the ``crossbar`` and ``deptcast`` executables beside this Python's
CROSSBAR = str(Path(sys.executable).with_name("crossbar"))
DEPTCAST = str(Path(sys.executable).with_name("deptcast"))


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.05):
    """Block until ``predicate()`` is true and return its value; fail with ``what`` after
    ``timeout`` seconds.

    :raises TimeoutError: naming ``what``
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def run_args(args: Sequence[str]) -> List[str]:
    """``deptcast run`` arguments for ``crossbar start`` arguments: its ``--loglevel`` is
    ``deptcast run``'s own (Crossbar's output at that level), the rest goes through after ``--``.

    :rtype: list
    """
    args = list(args)
    level: List[str] = []
    if "--loglevel" in args:
        i = args.index("--loglevel")
        level, args = ["--loglevel", args[i + 1]], args[:i] + args[i + 2:]
    return [*level, "--", *args] if args else level


class NodeProcess:
    """``crossbar start --cbdir <node_dir>`` in its own process group, logging to ``node.log``.

    :param node_dir: the node directory (holds ``config.json``)
    :param env: the process environment
    :param name: the node's name in messages
    :param args: further ``crossbar start`` arguments (e.g. ``["--loglevel", "info"]``)
    :param supervised: run it under ``deptcast run``, which starts the node again whenever it
        exits by itself (a crashed worker)
    """

    def __init__(self, node_dir: Path, env: Optional[Dict[str, str]] = None, name: str = "node",
                 args: Sequence[str] = (), supervised: bool = False) -> None:
        self.node_dir = Path(node_dir)
        self.env = dict(env if env is not None else os.environ)
        self.name = name
        self.args: List[str] = list(args)
        self.supervised = supervised
        self.log_path = self.node_dir / "node.log"
        self.proc: Optional[subprocess.Popen] = None
        self._log_offset = 0
        self._old_instance: Optional[str] = None
        self.last_health: Optional[Health] = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_since_start(self) -> str:
        """What the node logged since its last :meth:`start` (or :meth:`mark_log`)."""
        return self.log_text()[self._log_offset:]

    def mark_log(self) -> None:
        """Count the log from here: :meth:`wait_ready` then waits for a (supervised) restart,
        a node whose ``/health`` names another instance than now."""
        self._log_offset = len(self.log_text())
        health = self.health()
        self._old_instance = health.instance if health is not None else None

    @property
    def address(self):
        """``(host, port)`` of the node's web transport, from its config.

        :rtype: tuple
        """
        config = "config.json"
        if "--config" in self.args:
            config = self.args[self.args.index("--config") + 1]
        return node_address(self.node_dir / config)

    def health(self, serving: bool = False, timeout: float = 2.0) -> Optional[Health]:
        """The node's ``/health`` (or ``/health/serving``) answer, ``None`` if it does not answer.

        :rtype: Health or None
        """
        host, port = self.address
        return get_health(host, port, serving=serving, timeout=timeout)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 60.0, wait: bool = True, until: str = "serving") -> "NodeProcess":
        """Start the node; with ``wait``, return once it is ready (see :meth:`is_ready`; and
        kill it if it is not).

        :raises RuntimeError: if it exits; ``TimeoutError`` if it is not ready in time
        """
        assert not self.running, f"node {self.name} already running"
        self._log_offset = len(self.log_text())
        self._old_instance = None
        with open(self.log_path, "a") as log:
            command = ([DEPTCAST, "run", "--cbdir", str(self.node_dir), *run_args(self.args)] if self.supervised
                       else [CROSSBAR, "start", "--cbdir", str(self.node_dir), *self.args])
            self.proc = subprocess.Popen(command,
                                         stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                         cwd=str(self.node_dir), start_new_session=True)
        if wait:
            try:
                self.wait_ready(timeout, until)
            except BaseException:
                # a caller whose start fails never stops the node: leave no process behind
                self.stop(signal.SIGKILL)
                raise
        return self

    def is_ready(self, until: str = "serving") -> bool:
        """Whether the node's ``/health`` says it is ready (a new instance, after
        :meth:`mark_log`):

        - ``started``: it answers, every component has joined and its store is ready (it may
          still hold sends until its peers' links are up);
        - ``serving``: ``/health/serving`` is 200 (it takes clients);
        - ``healthy``: ``/health`` is 200 (it serves and every link is up).

        :raises RuntimeError: if the node has exited
        """
        if self.proc is None or self.proc.poll() is not None:
            code = self.proc.returncode if self.proc else None
            raise RuntimeError(f"node {self.name} exited with {code}:\n" + self.log_since_start()[-4000:])
        health = self.health(serving=until != "healthy")
        self.last_health = health
        if health is None or (self._old_instance is not None and health.instance == self._old_instance):
            return False
        if until == "started":
            components = health.body.get("components") or {}
            return bool(components) and all(components.values()) and bool(health.body.get("store", {}).get("ready"))
        return health.ok

    def wait_ready(self, timeout: float = 60.0, until: str = "serving") -> None:
        try:
            wait_until(lambda: self.is_ready(until), timeout, f"node {self.name} to be {until}", interval=0.1)
        except TimeoutError:
            said = self.last_health.body if self.last_health is not None else "no answer"
            raise TimeoutError(f"node {self.name} not {until} in {timeout}s (/health: {said}):\n"
                               + self.log_since_start()[-4000:]) from None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Stop the node with ``sig``, then make sure no process of its group outlives it.

        :returns: the node's exit code
        """
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            if sig == signal.SIGKILL:
                self._kill_group()
            else:
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill_group()
                self.proc.wait(timeout)
        # the node's workers share its process group
        self._kill_group()
        return self.proc.returncode

    def _kill_group(self) -> None:
        assert self.proc is not None  # only once started
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
