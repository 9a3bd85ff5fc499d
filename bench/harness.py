"""What the benchmarks share: servers started through their outside interfaces, readings of
their processes from ``/proc``, tokens, and the Node.js load generator.

deptcast is driven only as an operator and a client would drive it, so the same harness
measures any checkout (``--root``), whatever its package layout:

* a node: ``<root>/.venv/bin/deptcast node-config --port P --root <root> --output DIR/config.json``
  then ``<root>/.venv/bin/crossbar start --cbdir DIR``, settings in the environment
  (``DEPTCAST_JWT_SECRET``, ``DEPTCAST_RATE=0``, ...);
* a cluster: ``deptcast cluster init --node n1=127.0.0.1:P --node n2=127.0.0.1:Q --db URL``,
  PostgreSQL in a schema of its own (made and dropped here);
* ready means working: a WAMP session joins with a token and ``deptcast.history`` answers
  (the load generator's ``probe``); a cluster is ready once a subscriber on node 2 receives a
  message sent via node 1 (``linkprobe``). No log line is read.

Nothing here imports deptcast's own package.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import jwt

from components.ops.ports import free_port, free_port_run

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
LOADGEN = BENCH / "loadgen" / "loadgen.js"
PEER = BENCH / "peer" / "server.js"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

#: the three topics a deptcast client subscribes; ``{user}`` of the direct topic is filled in
#: from the forms in USER_TOPIC_FORMS (the first one the node accepts, found by the probe)
DEPT_TOPIC = "deptcast.dept.{dept}"
ALL_TOPIC = "deptcast.all"
#: the direct topic, newest form first: the contract's ``deptcast.user.<dept>_<user>``, then
#: the older ``deptcast.user.<user>``
USER_TOPIC_FORMS = ("deptcast.user.{dept}_{user}", "deptcast.user.{user}")
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379"


# ----------------------------------------------------------------------------- plumbing

def stop_cleanly_on_signals() -> None:
    """SIGTERM (and SIGINT, which a shell ignores in background jobs) raise SystemExit, so the
    ``finally`` blocks stop every server and load generator we started."""
    def stop(signum, frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def raise_nofile() -> int:
    """Raise the soft open-files limit to the hard one (children inherit it); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def wait_port(port: int, timeout: float, proc: Optional[subprocess.Popen] = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.args} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def stop_process(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    """SIGTERM a process we started (in a session of its own), then SIGKILL its group."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # workers left behind, if any
    except (ProcessLookupError, PermissionError):
        pass
    if proc.poll() is None:
        proc.wait(timeout)


# ----------------------------------------------------------------------------- /proc

def _stat_fields(pid: int) -> List[str]:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def descendants(root: int) -> List[int]:
    """``root`` and every process below it (crossbar's controller and its workers)."""
    children: Dict[int, List[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = int(_stat_fields(int(entry))[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_ticks(pids: Sequence[int]) -> Dict[int, int]:
    """utime + stime of each process (all its threads), in clock ticks."""
    out = {}
    for pid in pids:
        try:
            f = _stat_fields(pid)
            out[pid] = int(f[11]) + int(f[12])
        except (OSError, IndexError, ValueError):
            pass
    return out


def machine_busy_seconds() -> float:
    """CPU seconds all cores of the machine spent busy since boot (``/proc/stat``): with the
    servers' and the load generator's own, it shows what other work took during a window."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    busy = sum(fields[:8]) - idle  # user nice system idle iowait irq softirq steal
    return busy / CLK_TCK


def wait_quiet(below_pct: float, max_wait: float, sample: float = 3.0) -> float:
    """Wait until the machine's busy CPU (over ``sample`` seconds) is under ``below_pct`` percent
    of one core, at most ``max_wait`` seconds; return the last reading. Call it when nothing of
    ours runs: it lets other work on a shared machine finish before a measurement."""
    deadline = time.monotonic() + max_wait
    while True:
        b0 = machine_busy_seconds()
        time.sleep(sample)
        pct = 100 * (machine_busy_seconds() - b0) / sample
        if pct < below_pct or time.monotonic() >= deadline:
            return pct


def rss_bytes(pids: Sequence[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            pass
    return total


def process_label(pid: int) -> str:
    """A short name for a server process: crossbar's controller, router or container worker,
    else the program's name."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "?"
    for marker, label in (("RouterController", "router"), ("ContainerController", "container"),
                          ("crossbar-controller", "controller"), ("crossbar start", "controller"),
                          ("postgres", "postgres"), ("redis-server", "redis")):
        if marker in cmd:
            return label
    return Path(cmd.split(" ", 1)[0]).name or "?"


@dataclass
class CpuSample:
    ticks: Dict[int, int]
    t: float
    machine: float = field(default_factory=machine_busy_seconds)

    def machine_seconds_until(self, later: "CpuSample") -> float:
        """Busy CPU seconds of the whole machine between the two samples."""
        return later.machine - self.machine

    def seconds_until(self, later: "CpuSample") -> float:
        """CPU seconds the processes used between the two samples; a process born in between
        counts whole, one that ended in between is lost (none should)."""
        used = sum(v - self.ticks.get(pid, 0) for pid, v in later.ticks.items())
        return used / CLK_TCK

    def by_label(self, later: "CpuSample") -> Dict[str, float]:
        """The same, per kind of process (``process_label``), summed."""
        out: Dict[str, float] = {}
        for pid, v in later.ticks.items():
            label = process_label(pid)
            out[label] = out.get(label, 0.0) + (v - self.ticks.get(pid, 0)) / CLK_TCK
        return out


class Server:
    """Something we started whose processes we measure."""

    name = "server"

    def pids(self) -> List[int]:
        raise NotImplementedError

    def cpu(self) -> CpuSample:
        return CpuSample(cpu_ticks(self.pids()), time.monotonic())

    def rss(self) -> int:
        return rss_bytes(self.pids())

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


# ----------------------------------------------------------------------------- tokens

def mint(secret: str, user: str, dept: str, role: str = "member", ttl: int = 4 * 3600) -> str:
    """A deptcast token (the contract's claims), signed with PyJWT HS256."""
    return jwt.encode({"sub": user, "dept": dept, "role": role, "exp": int(time.time()) + ttl},
                      secret, algorithm="HS256")


# ----------------------------------------------------------------------------- deptcast

def venv_tool(root: Path, name: str) -> str:
    tool = root / ".venv" / "bin" / name
    if not tool.exists():
        raise SystemExit(f"{tool} is missing: run scripts/install in {root}")
    return str(tool)


def _clean_env(extra: Dict[str, str]) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPTCAST_")}
    env.update(extra)
    return env


class DeptcastNode(Server):
    """One deptcast node started with ``crossbar start --cbdir``; ``node_dir`` is prepared by
    the caller (``node-config`` or ``cluster init``)."""

    def __init__(self, root: Path, node_dir: Path, port: int, env: Dict[str, str], name: str) -> None:
        self.root, self.node_dir, self.port, self.name = root, node_dir, port, name
        self.log_path = node_dir / "node.log"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [venv_tool(root, "crossbar"), "start", "--cbdir", str(node_dir)],
                stdout=log, stderr=subprocess.STDOUT, env=_clean_env(env), cwd=str(node_dir),
                start_new_session=True)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def base(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def pids(self) -> List[int]:
        return descendants(self.proc.pid) if self.proc.poll() is None else []

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"node {self.name} exited with {self.proc.returncode}; its log ends:\n{tail}")

    def stop(self) -> None:
        stop_process(self.proc)


def start_single_node(root: Path, workdir: Path, secret: str, extra_env: Optional[Dict[str, str]] = None,
                      name: str = "bench") -> DeptcastNode:
    """``deptcast node-config`` + ``crossbar start``: one node, SQLite in its directory."""
    node_dir = workdir / name
    node_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    subprocess.run([venv_tool(root, "deptcast"), "node-config", "--port", str(port), "--root", str(root),
                    "--output", str(node_dir / "config.json")], check=True, cwd=str(root),
                   capture_output=True)
    env = {"DEPTCAST_JWT_SECRET": secret, "DEPTCAST_RATE": "0", "DEPTCAST_NODE": name, **(extra_env or {})}
    return DeptcastNode(root, node_dir, port, env, name)


class PgSchema:
    """A PostgreSQL schema of our own for a cluster, dropped afterwards."""

    def __init__(self, base_url: str, name: str) -> None:
        self.base_url, self.name = base_url, name
        self.app = f"deptcast-bench-{name}"
        self.psql("create schema " + name)

    def psql(self, sql: str) -> str:
        psql = shutil.which("psql")
        if psql is None:
            raise SystemExit("psql is missing (Debian package postgresql-client)")
        return subprocess.run([psql, self.base_url, "-X", "-q", "-t", "-A", "-c", sql], check=True,
                              capture_output=True, text=True).stdout

    @property
    def url(self) -> str:
        # the schema through search_path; application_name finds the nodes' backends
        sep = "&" if "?" in self.base_url else "?"
        return f"{self.base_url}{sep}options=-c%20search_path%3D{self.name}&application_name={self.app}"

    def backend_pids(self) -> List[int]:
        try:
            out = self.psql(f"select pid from pg_stat_activity where application_name = '{self.app}'")
        except subprocess.CalledProcessError:
            return []
        return [int(x) for x in out.split()]

    def drop(self) -> None:
        self.psql(f"drop schema if exists {self.name} cascade")


class DeptcastCluster(Server):
    """``deptcast cluster init`` for two nodes on 127.0.0.1 and both started; the PostgreSQL
    backends serving them count as the cluster's processes."""

    name = "cluster"

    def __init__(self, root: Path, workdir: Path, pg_url: str, nodes: int = 2,
                 extra_env: Optional[Dict[str, str]] = None,
                 configure: Optional[Callable[[Path], None]] = None) -> None:
        """:param configure: called with each node's directory before the node starts (to edit
            its ``config.json`` as an operator would)"""
        self.schema = PgSchema(pg_url, f"bench_{os.getpid()}_{secrets.token_hex(3)}")
        self.nodes: List[DeptcastNode] = []
        try:
            out = workdir / "cluster"
            ports = [free_port() for _ in range(nodes)]
            cmd = [venv_tool(root, "deptcast"), "cluster", "init", "--out", str(out), "--db", self.schema.url,
                   "--root", str(root)]
            for i, port in enumerate(ports, 1):
                cmd += ["--node", f"n{i}=127.0.0.1:{port}"]
            subprocess.run(cmd, check=True, cwd=str(root), stdout=subprocess.DEVNULL)
            self.secret = (out / "jwt.secret").read_text().strip()
            if configure is not None:
                for i in range(1, nodes + 1):
                    configure(out / f"n{i}")
            for i, port in enumerate(ports, 1):
                env = {"DEPTCAST_JWT_SECRET": self.secret, "DEPTCAST_RATE": "0", **(extra_env or {})}
                self.nodes.append(DeptcastNode(root, out / f"n{i}", port, env, f"n{i}"))
        except BaseException:
            self.stop()
            raise

    def pids(self) -> List[int]:
        return [pid for n in self.nodes for pid in n.pids()] + self.schema.backend_pids()

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()
        self.nodes = []
        if self.schema is not None:
            self.schema.drop()
            self.schema = None


class NginxProcess:
    """nginx in the foreground from a generated config, everything under ``prefix``."""

    def __init__(self, conf: Path, prefix: Path) -> None:
        for sub in ("logs", "tmp"):
            (prefix / sub).mkdir(parents=True, exist_ok=True)
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.prefix = prefix
        self.proc = subprocess.Popen([nginx, "-p", str(prefix), "-c", str(conf), "-e", "logs/error.log",
                                      "-g", "daemon off;"], stdout=subprocess.DEVNULL,
                                     stderr=open(prefix / "logs" / "stderr.log", "a"), start_new_session=True)

    def pids(self) -> List[int]:
        return descendants(self.proc.pid) if self.proc.poll() is None else []

    def stop(self) -> None:
        stop_process(self.proc)


class LocalCluster(Server):
    """``deptcast cluster init --local auto`` (one node per core on 127.0.0.1, PostgreSQL) with
    its generated nginx in front; clients connect through nginx only. The nodes, nginx and the
    PostgreSQL backends serving the nodes count as the cluster's processes.

    The balancer's per-address limits are raised (``lb_limits``): every bench client comes from
    127.0.0.1, where real clients come from many addresses."""

    name = "lbcluster"

    def __init__(self, root: Path, workdir: Path, pg_url: str, local: str = "auto",
                 lb_limits: int = 65_000) -> None:
        self.schema: Optional[PgSchema] = PgSchema(pg_url, f"bench_{os.getpid()}_{secrets.token_hex(3)}")
        self.nodes: List[DeptcastNode] = []
        self.nginx: Optional[NginxProcess] = None
        try:
            out = workdir / "lbcluster"
            count = (os.cpu_count() or 1) if local == "auto" else int(local)
            base = free_port_run(2 * count)
            self.lb_port = free_port()
            cmd = [venv_tool(root, "deptcast"), "cluster", "init", "--local", local, "--base-port", str(base),
                   "--lb-listen", f"127.0.0.1:{self.lb_port}", "--out", str(out), "--db", self.schema.url,
                   "--root", str(root), "--lb-conn-per-ip", str(lb_limits), "--lb-rate-per-ip", str(lb_limits),
                   "--lb-burst", str(lb_limits)]
            subprocess.run(cmd, check=True, cwd=str(root), stdout=subprocess.DEVNULL)
            self.secret = (out / "jwt.secret").read_text().strip()
            for i in range(count):
                env = {"DEPTCAST_JWT_SECRET": self.secret, "DEPTCAST_RATE": "0"}
                self.nodes.append(DeptcastNode(root, out / f"n{i + 1}", base + i, env, f"n{i + 1}"))
            self.nginx = NginxProcess(out / "nginx.conf", out / "nginx")
        except BaseException:
            self.stop()
            raise

    @property
    def base(self) -> str:
        return f"ws://127.0.0.1:{self.lb_port}"

    @property
    def url(self) -> str:
        return self.base + "/ws"

    def check_alive(self) -> None:
        for n in self.nodes:
            n.check_alive()
        if self.nginx is None or self.nginx.proc.poll() is not None:
            raise RuntimeError("nginx exited: " + str(self.nginx and (self.nginx.prefix / "logs" / "stderr.log")))

    def pids(self) -> List[int]:
        schema = self.schema.backend_pids() if self.schema is not None else []
        nginx = self.nginx.pids() if self.nginx is not None else []
        return [pid for n in self.nodes for pid in n.pids()] + nginx + schema

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()
        self.nodes = []
        if self.nginx is not None:
            self.nginx.stop()
            self.nginx = None
        if self.schema is not None:
            self.schema.drop()
            self.schema = None


# ----------------------------------------------------------------------------- the peer

def redis_pid(url: str = REDIS_URL) -> int:
    """The Redis server's pid, from its own INFO (it is a shared service, not ours to start)."""
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    try:
        s = socket.create_connection((host, int(port)), timeout=5)
    except OSError as exc:
        raise RuntimeError(f"no Redis at {url} ({exc}): the peer needs one (Debian package redis-server)") from exc
    with s:
        s.sendall(b"INFO server\r\n")
        data = b""
        while b"process_id:" not in data or not data.endswith(b"\r\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    for line in data.decode(errors="replace").splitlines():
        if line.startswith("process_id:"):
            return int(line.split(":", 1)[1])
    raise RuntimeError(f"no process_id in the INFO of the Redis at {url}")


class SocketIoPeer(Server):
    """The peer: ``processes`` Socket.IO servers (bench/peer) on one Redis adapter channel."""

    name = "peer"

    def __init__(self, workdir: Path, processes: int = 2, redis_url: str = REDIS_URL) -> None:
        node = shutil.which("node")
        if node is None:
            raise SystemExit("node is missing (Debian packages nodejs npm)")
        self.redis = redis_pid(redis_url)
        self.ports = [free_port() for _ in range(processes)]
        key = f"deptcast-bench-{os.getpid()}-{secrets.token_hex(3)}"
        self.procs: List[subprocess.Popen] = []
        self.log_path = workdir / "peer.log"
        with open(self.log_path, "ab") as log:
            for port in self.ports:
                self.procs.append(subprocess.Popen(
                    [node, str(PEER), "--port", str(port), "--redis", redis_url, "--key", key],
                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=str(PEER.parent)))
        for port, proc in zip(self.ports, self.procs):
            wait_port(port, 30, proc)

    def bases(self) -> List[str]:
        return [f"http://127.0.0.1:{p}" for p in self.ports]

    def pids(self) -> List[int]:
        return [p.pid for p in self.procs if p.poll() is None] + [self.redis]

    def stop(self) -> None:
        for p in self.procs:
            stop_process(p)
        self.procs = []


# ----------------------------------------------------------------------------- the load generator

class LoadgenFailed(RuntimeError):
    pass


#: load generators still running, stopped by :func:`close_loadgens`
_LIVE: set = set()


def close_loadgens() -> None:
    """Stop every load generator still running (after an error or an interrupt)."""
    for lg in list(_LIVE):
        lg.close()


class Loadgen:
    """The Node.js load generator run with one ``config``; read its events with :meth:`events`."""

    def __init__(self, config: dict, workdir: Path, stdin: bool = False) -> None:
        node = shutil.which("node")
        if node is None:
            raise SystemExit("node is missing (Debian packages nodejs npm)")
        fd, cfg_path = tempfile.mkstemp(prefix=f"loadgen-{config['mode']}-", suffix=".json", dir=str(workdir))
        with os.fdopen(fd, "w") as f:
            json.dump(config, f)
        self.err_path = Path(cfg_path).with_suffix(".stderr")
        with open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen([node, str(LOADGEN), cfg_path], stdout=subprocess.PIPE, stderr=err,
                                         stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, text=True,
                                         bufsize=1, start_new_session=True)
        _LIVE.add(self)

    def events(self) -> Iterator[dict]:
        """Each event as the load generator prints it; raises if it fails."""
        try:
            for line in self.proc.stdout:
                line = line.strip()
                if not line:
                    continue
                event = json.loads(line)
                if event.get("event") == "error":
                    raise LoadgenFailed(f"{event['error']} (stderr: {self.stderr()})")
                yield event
            code = self.proc.wait()
            if code != 0:
                raise LoadgenFailed(f"load generator exited with {code}: {self.stderr()}")
        finally:
            self.close()

    def tell(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")[-2000:]

    def close(self) -> None:
        _LIVE.discard(self)
        if self.proc.poll() is None:
            stop_process(self.proc, timeout=5)

    def __enter__(self) -> "Loadgen":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def loadgen_events(config: dict, workdir: Path) -> List[dict]:
    return list(Loadgen(config, workdir).events())


def wait_ready(node: DeptcastNode, secret: str, workdir: Path, timeout: float = 90.0) -> dict:
    """Ready = a WAMP session joins with a token and deptcast.history answers. Returns the
    probe's answer, with the form of the direct-message topic this node accepts."""
    node.check_alive()
    spec = {"url": node.url, "authid": "probe", "token": mint(secret, "probe", "bench"), "dept": "bench"}
    events = loadgen_events({"mode": "probe", "spec": spec, "userTopics": list(USER_TOPIC_FORMS),
                             "timeout": timeout}, workdir)
    last = events[-1]
    if last.get("event") != "probe_ok":
        node.check_alive()
        raise RuntimeError(f"node {node.name} not ready after {timeout}s: {last}")
    if last.get("userTopic") is None:
        raise RuntimeError(f"node {node.name} refused every form of the direct topic: {last.get('tried')}")
    return last


def wait_linked(kind: str, send_spec: dict, recv_spec: dict, to: str, workdir: Path, timeout: float = 120.0) -> float:
    """A receiver on one endpoint gets a message sent via another: the path between them is up."""
    events = loadgen_events({"mode": "linkprobe", "kind": kind, "sender": send_spec, "receiver": recv_spec,
                             "to": to, "timeout": timeout}, workdir)
    last = events[-1]
    if last.get("event") != "linkprobe_ok":
        raise RuntimeError(f"no message crossed from sender to receiver in {timeout}s: {last}")
    return last["seconds"]


# ----------------------------------------------------------------------------- the machine

def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _run(cmd: List[str], cwd: Optional[Path] = None) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def machine_state() -> dict:
    return {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "loadavg": [round(x, 2) for x in os.getloadavg()]}


def machine_info(root: Path) -> dict:
    versions = _run([str(root / ".venv" / "bin" / "python"), "-c",
                     "import importlib.metadata as m, json; print(json.dumps({p: m.version(p) for p in "
                     "('crossbar', 'autobahn', 'twisted')}))"])
    peer_lock = json.loads((BENCH / "peer" / "package-lock.json").read_text())["packages"]
    return {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_gib": round(os.sysconf("SC_PHYS_PAGES") * PAGE / 2**30, 1),
        "kernel": platform.release(),
        "python": _run([str(root / ".venv" / "bin" / "python"), "-V"]),
        "node": _run(["node", "--version"]),
        "deptcast_commit": _run(["git", "rev-parse", "--short", "HEAD"], root),
        # the last commit that changed deptcast itself (not the benchmark)
        "deptcast_code_commit": _run(["git", "log", "-1", "--format=%h", "--", ".", ":(exclude)bench",
                                      ":(exclude)scripts/bench", ":(exclude).gitignore",
                                      ":(exclude)NOTES-*.md"], root),
        # changes to the measured code (the benchmark's own files do not count)
        "deptcast_dirty": bool(_run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                     ":(exclude)bench", ":(exclude)scripts/bench"], root)),
        "versions": json.loads(versions) if versions.startswith("{") else versions,
        "socket.io": peer_lock["node_modules/socket.io"]["version"],
        "redis-adapter": peer_lock["node_modules/@socket.io/redis-adapter"]["version"],
        "open_files": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
    }


@dataclass
class Workdir:
    """A temporary directory for node dirs, configs and logs; kept when ``keep``."""

    keep: bool = False
    path: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="deptcast-bench-")))

    def cleanup(self) -> None:
        if not self.keep:
            shutil.rmtree(self.path, ignore_errors=True)
