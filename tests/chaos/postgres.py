"""A private PostgreSQL server for the chaos tests, to stop, freeze and restart at will.

It is made with Debian's ``initdb``/``pg_ctl`` in a temporary directory, listens on a free
port of 127.0.0.1 (and a Unix socket in its own directory), trusts local connections, and is
removed afterwards. The shared server the other tests use (port 5432) is never touched.
When the tests run as root, the server runs as the ``postgres`` user (PostgreSQL refuses to
run as root).
"""

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import List, Optional

import psutil
import psycopg

from tests.support.nodes import free_port, wait_until


def postgres_bin() -> Optional[Path]:
    """The newest ``/usr/lib/postgresql/<version>/bin`` that has ``initdb``, if any.

    :rtype: Path or None
    """
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    return Path(found[-1]).parent if found else None


def why_not() -> Optional[str]:
    """Why a private server cannot be made here, or ``None`` if it can.

    :rtype: str or None
    """
    if postgres_bin() is None:
        return "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (Debian package postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root, and there is no 'postgres' user to run the server as"
    return None


class PrivatePostgres:
    """One PostgreSQL server of our own.

    :param fsync: off by default: the tests stop it with ``-m fast`` (a clean shutdown, nothing
        lost) and never crash the machine, so durability to disk is not what they test
    """

    def __init__(self, fsync: bool = False) -> None:
        self.bin = postgres_bin()
        if self.bin is None:
            raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin "
                               "(Debian package postgresql)")
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="deptcast-chaos-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self._fsync = fsync
        self._as_user: List[str] = []
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self._as_user = ["runuser", "-u", "postgres", "--"]

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([*self._as_user, *args], check=check, capture_output=True, text=True, timeout=120)

    def init(self) -> "PrivatePostgres":
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                  "--no-sync", "-E", "UTF8", "--locale=C")
        return self

    def start(self) -> "PrivatePostgres":
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} "
                   f"-c fsync={'on' if self._fsync else 'off'} -c max_connections=100")
        result = self._run(str(self.bin / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(self.data),
                           "-l", str(self.log), "-o", options, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {result.stdout}{result.stderr}\n{self.server_log()[-2000:]}")
        wait_until(self.answers, 30, "the private PostgreSQL server to answer")
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: disconnect every client, shut down cleanly)."""
        self._run(str(self.bin / "pg_ctl"), "stop", "-w", "-t", "60", "-m", mode, "-D", str(self.data), check=False)

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def processes(self) -> List[psutil.Process]:
        """The postmaster and every process it started."""
        pid_file = self.data / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().splitlines()[0])
            main = psutil.Process(pid)
        except (FileNotFoundError, ValueError, IndexError, psutil.NoSuchProcess):
            return []
        return [main, *main.children(recursive=True)]

    def freeze(self) -> None:
        """SIGSTOP the whole server: it keeps its sockets (the kernel still accepts
        connections and answers TCP keepalives) but answers nothing."""
        for p in self.processes():
            p.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        for p in reversed(self.processes()):
            p.send_signal(signal.SIGCONT)

    def answers(self) -> bool:
        try:
            with psycopg.connect(self.url, connect_timeout=2, autocommit=True) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def server_log(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except (FileNotFoundError, PermissionError):
            return ""

    def destroy(self) -> None:
        """Stop the server (thawed first, should a test have failed while it was frozen) and
        remove its directory."""
        self.thaw()
        self.stop("immediate")
        for p in self.processes():
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)
