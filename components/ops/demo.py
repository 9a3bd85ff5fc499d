"""``deptcast cluster demo``: a 3-node cluster and nginx on loopback, supervised, until Ctrl-C."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from components.ops.cluster import init_cluster
from components.ops.nginx import DEFAULT_LB_PORT
from components.ops.process import NodeProcess
from components.ops.topology import local_nodes


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
    """Stop a process started in its own session, and everything in its process group."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def run_demo(db: str, out: Path, base_port: int = 8081, lb_port: int = DEFAULT_LB_PORT,
             timeout: float = 120.0) -> int:
    """Start a 3-node cluster plus nginx on loopback; stop everything on Ctrl-C (or SIGTERM).

    :rtype: int
    """
    nodes = local_nodes(3, base_port, [lb_port])
    layout = init_cluster(nodes, db, out, lb_listen=f"127.0.0.1:{lb_port}", dev=True)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    # quick-start mode: the sign-in form of the web page works (loopback only)
    env = {**os.environ, "DEPTCAST_DEV": "1"}
    env.pop("DEPTCAST_JWT_SECRET", None)  # the nodes share the cluster's jwt.secret
    # supervised: a node whose worker crashes comes back by itself (deptcast run)
    node_procs = [NodeProcess(layout.node_dirs[n.name], env=env, name=n.name, supervised=True) for n in nodes]
    lb: Optional[subprocess.Popen] = None
    stop_requested = []

    def on_signal(signum, frame):
        stop_requested.append(signum)
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        started = time.monotonic()
        for proc in node_procs:
            proc.start(wait=False)
        print(f"starting {', '.join(n.name for n in nodes)} (logs: {layout.out}/<node>/node.log) ...", flush=True)
        for proc in node_procs:
            proc.wait_ready(timeout)
        print(f"cluster ready in {time.monotonic() - started:.1f} s", flush=True)
        lb = subprocess.Popen([nginx, "-p", str(layout.out / "nginx"), "-c", str(layout.nginx_conf),
                               "-e", "logs/error.log", "-g", "daemon off;"], start_new_session=True)
        print(f"connect to http://127.0.0.1:{lb_port}/ (WAMP: ws://127.0.0.1:{lb_port}/ws, legacy: "
              f"ws://127.0.0.1:{lb_port}/webSocket/<dept>_<user>); nodes on "
              + ", ".join(f"{n.name}=ws://{n.address}/ws" for n in nodes), flush=True)
        print(f"tokens: deptcast token --cbdir {layout.out} --user U --dept D; Ctrl-C stops everything", flush=True)
        while not stop_requested:
            if lb.poll() is not None or any(not p.running for p in node_procs):
                print("a process of the cluster exited; stopping", file=sys.stderr, flush=True)
                return 1
            time.sleep(0.2)
        return 0
    finally:
        # nginx first (SIGQUIT: graceful), then the nodes (SIGTERM: crossbar's clean shutdown)
        if lb is not None:
            _stop(lb, signal.SIGQUIT)
        for proc in node_procs:
            proc.stop(signal.SIGTERM)
        for s, handler in previous.items():
            signal.signal(s, handler)
        print("stopped", flush=True)
