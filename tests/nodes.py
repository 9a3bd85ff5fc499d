"""Real Crossbar nodes for integration tests: a node directory in a temp folder, free ports,
``crossbar start --cbdir``, and a wait for the node's own "ready" line."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Optional

from components.nodeconfig import node_config, write_node_dir

REPO = Path(__file__).resolve().parent.parent
CROSSBAR = str(Path(sys.executable).with_name("crossbar"))
#: a 48-byte secret the test nodes and the test tokens share
TEST_SECRET = "test-secret-" + "x" * 40
#: lines the components log once they serve; a node is ready when all have appeared
READY_LINES = ("deptcast auth: authenticator and authorizer ready",
               "deptcast api: send and history ready",
               "deptcast presence: online and presence events ready")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    """Block until ``predicate()`` is true; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Node:
    """One Crossbar node run as a subprocess from a node directory of its own.

    :param node_dir: made if missing; ``config.json`` is written unless ``config`` is ``None``
        and one exists
    """

    def __init__(self, node_dir: Path, port: Optional[int] = None, env: Optional[Dict[str, str]] = None,
                 config: Optional[dict] = None, name: str = "node") -> None:
        self.node_dir = Path(node_dir)
        self.port = port or free_port()
        self.name = name
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("DEPTCAST_")}
        self.env = {**inherited, "DEPTCAST_JWT_SECRET": TEST_SECRET, "DEPTCAST_NODE": name, **(env or {})}
        if config is None and not (self.node_dir / "config.json").exists():
            config = node_config(port=self.port, root=REPO, interface="127.0.0.1")
        if config is not None:
            write_node_dir(self.node_dir, config)
        self.log_path = self.node_dir / "node.log"
        self.proc: Optional[subprocess.Popen] = None
        self._log_offset = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_since_start(self) -> str:
        return self.log_text()[self._log_offset:]

    def start(self, timeout: float = 60.0) -> "Node":
        assert self.proc is None or self.proc.poll() is not None, "node already running"
        self._log_offset = len(self.log_text())
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [CROSSBAR, "start", "--cbdir", str(self.node_dir), "--loglevel", "info"],
            stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=str(self.node_dir),
            start_new_session=True)
        log.close()
        try:
            self.wait_ready(timeout)
        except BaseException:
            # a fixture whose start fails never reaches its teardown: leave no node behind
            self.stop(signal.SIGKILL)
            raise
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"node {self.name} exited with {self.proc.returncode}:\n"
                                   + self.log_since_start()[-4000:])
            text = self.log_since_start()
            return all(line in text for line in READY_LINES)
        try:
            wait_until(ready, timeout, f"node {self.name} to be ready", interval=0.1)
        except TimeoutError:
            raise TimeoutError(f"node {self.name} not ready in {timeout}s:\n" + self.log_since_start()[-4000:])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Stop the node with ``sig``; SIGKILL goes to the whole process group (workers too)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        if sig == signal.SIGKILL:
            os.killpg(self.proc.pid, signal.SIGKILL)
        else:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(timeout)
        finally:
            self._reap_group()

    def _reap_group(self) -> None:
        # the node's workers share its process group; make sure none outlives a test
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
