"""A deptcast cluster generated from one description: node directories and an nginx config.

``deptcast cluster init --node n1=HOST:PORT --node n2=... --db postgresql://... --out DIR``
writes, for every node, ``DIR/<name>/`` with

- ``key.priv`` / ``key.pub``: the node key pair, made by Crossbar's own key code (kept
  when the generator runs again, so the peers' principals stay valid);
- ``config.json``: the single-node configuration plus a full mesh of router-to-router links
  (rlinks). Each node owns one link to every peer and pulls over it what its own
  subscribers need (``forward_local_events`` only): an event crosses one link at most,
  so nothing is delivered twice. Each link authenticates to the peer's ``/rlink`` path
  with WAMP-cryptosign using the node key; the peer lists that public key as a principal
  of the role :data:`RLINK_ROLE`;
- ``jwt.secret``: the JWT secret every node shares (made once, kept).

and ``DIR/nginx.conf``: a round-robin load balancer in front of all nodes.
"""

import argparse
import ipaddress
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from components.core import names
from components.core.names import RLINK_ROLE
from components.core.settings import PING_INTERVAL_MS, PING_TIMEOUT_MS, SECRET_FILE, read_secret
from components.ops.nodeconfig import SOURCE_ROOT, node_config, permission, render
from components.ops.process import NodeProcess
from components.ops.rolling import add_cli as add_restart_cli
from components.ops.status import add_cli as add_status_cli, internal_locations, write_description
#: the web path peers' links connect to (not proxied by the load balancer)
RLINK_PATH = "rlink"
#: nginx idle timeouts (s): longer than the WebSocket ping interval plus its timeout
PROXY_TIMEOUT_S = max(60, 3 * (PING_INTERVAL_MS + PING_TIMEOUT_MS) // 1000)
DEFAULT_LB_PORT = 8000

_NAME_RE = re.compile(r"[a-z][a-z0-9-]{0,31}")


@dataclass(frozen=True)
class NodeSpec:
    """One node of the cluster description.

    :ivar name: a short name (``n1``); it is the node's directory and its link identity
    :ivar host: the address peers and the load balancer reach the node at
    :ivar port: the node's web port (``/``, ``/ws``, ``/webSocket/``, ``/rlink``)
    """

    name: str
    host: str
    port: int

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_node_spec(text: str) -> NodeSpec:
    """Read ``NAME=HOST:PORT``.

    :raises ValueError: with a message saying what is wrong
    :rtype: NodeSpec
    """
    name, sep, address = text.partition("=")
    if not sep:
        raise ValueError(f"--node {text!r}: use NAME=HOST:PORT, e.g. n1=10.0.0.1:8080")
    if not _NAME_RE.fullmatch(name):
        raise ValueError(f"--node {text!r}: the name must be lower-case letters, digits and '-', "
                         "starting with a letter")
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--node {text!r}: use NAME=HOST:PORT with a port from 1 to 65535")
    return NodeSpec(name, host, int(port))


def check_cluster(nodes: Sequence[NodeSpec], db: str) -> None:
    """Refuse descriptions that cannot work.

    :raises ValueError: duplicate names or addresses, fewer than two nodes, no PostgreSQL URL
    """
    if len(nodes) < 2:
        raise ValueError("a cluster needs at least two --node entries")
    seen_names = [n.name for n in nodes]
    if len(set(seen_names)) != len(seen_names):
        raise ValueError("node names must be unique")
    if len({(n.host, n.port) for n in nodes}) != len(nodes):
        raise ValueError("node addresses must be unique")
    if not db.startswith(("postgresql://", "postgres://")):
        raise ValueError("--db must be a postgresql:// URL: the nodes of a cluster share one database")


def ensure_node_key(node_dir: Path) -> str:
    """Make the node key pair with Crossbar's own key code unless it exists; return the
    public key (hex).

    :rtype: str
    """
    from crossbar.common.key import _maybe_generate_node_key, _read_node_key

    node_dir = Path(node_dir)
    node_dir.mkdir(parents=True, exist_ok=True)
    _maybe_generate_node_key(str(node_dir))
    return _read_node_key(str(node_dir), private=False)["hex"]


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, readable by its owner only (keys, secrets, database URLs)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def rlink_role() -> Dict[str, Any]:
    """The role of peers' link sessions: subscribe and publish on deptcast's topics, nothing else."""
    return {"name": RLINK_ROLE, "permissions": [permission("deptcast.", publish=True, subscribe=True)]}


def rlink_path(peers: Sequence[NodeSpec], pubkeys: Dict[str, str]) -> Dict[str, Any]:
    """The ``/rlink`` WebSocket path: WAMP-cryptosign, one principal per peer node."""
    return {
        "type": "websocket",
        "serializers": ["cbor", "msgpack", "json"],
        "auth": {"cryptosign": {"type": "static", "principals": {
            peer.name: {"realm": names.REALM, "role": RLINK_ROLE, "authorized_keys": [pubkeys[peer.name]]}
            for peer in peers
        }}},
        "options": {"auto_ping_interval": PING_INTERVAL_MS, "auto_ping_timeout": PING_TIMEOUT_MS},
    }


def rlink(me: NodeSpec, peer: NodeSpec) -> Dict[str, Any]:
    """The link ``me`` owns to ``peer``: it pulls the events ``me``'s own subscribers need.

    On the owning node's side (the link's *local* leg), ``forward_local_events`` means:
    for every subscription made on this node, subscribe on the peer and re-publish what
    arrives here. Calls are never forwarded: every node registers its own procedures.
    """
    return {
        "id": f"to-{peer.name}",
        "realm": names.REALM,
        "authid": me.name,
        "transport": {
            "type": "websocket",
            "endpoint": {"type": "tcp", "host": peer.host, "port": peer.port, "timeout": 5},
            "url": f"ws://{peer.address}/{RLINK_PATH}",
            "serializers": ["cbor"],
        },
        "forward_local_events": True,
        "forward_remote_events": False,
        "forward_local_invocations": False,
        "forward_remote_invocations": False,
    }


def _listen_interface(host: str) -> Optional[str]:
    """Listen on the node's own address when it is an IP literal, else on every interface."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    return host


def cluster_node_config(me: NodeSpec, nodes: Sequence[NodeSpec], pubkeys: Dict[str, str], db: str,
                        root: Optional[Path] = None) -> Dict[str, Any]:
    """The Crossbar configuration of node ``me`` in the cluster ``nodes``.

    :param pubkeys: node name to public key (hex)
    :param db: the PostgreSQL URL all nodes share
    :param root: the checkout holding ``components`` and ``web``
    :rtype: dict
    """
    peers = [n for n in nodes if n.name != me.name]
    env = {"DEPTCAST_DB": db, "DEPTCAST_NODE": me.name,
           "DEPTCAST_PEERS": ",".join(p.name for p in peers)}
    return node_config(port=me.port, root=root, interface=_listen_interface(me.host),
                       extra_roles=[rlink_role()],
                       extra_paths={RLINK_PATH: rlink_path(peers, pubkeys)},
                       rlinks=[rlink(me, p) for p in peers], env=env)


def nginx_config(nodes: Sequence[NodeSpec], listen: str = str(DEFAULT_LB_PORT), expose_internal: bool = False) -> str:
    """A complete nginx configuration: round robin over ``nodes`` for ``/``, ``/ws`` and
    ``/webSocket/`` (WebSocket upgrade, idle timeouts longer than the ping interval).

    Paths (pid, logs, temp files) are relative, so ``nginx -p DIR -c FILE`` keeps them in
    ``DIR``; ``/rlink`` is not proxied (404): peers connect to each other directly.

    :param listen: nginx's ``listen`` argument, e.g. ``8000`` or ``127.0.0.1:8000``
    :param expose_internal: proxy ``/health`` and ``/metrics`` too (else 404: scrape each node)
    :rtype: str
    """
    servers = "\n".join(f"        server {n.address} max_fails=1 fail_timeout=2s;" for n in nodes)
    ws_servers = "\n".join(f"        server {n.address} max_fails=0;" for n in nodes)
    websocket = f"""            proxy_pass http://deptcast_ws;
            # a node that is stopping (or down) refuses at once: the next one is tried
            proxy_next_upstream error timeout;
            proxy_connect_timeout 2s;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_buffering off;
            proxy_read_timeout {PROXY_TIMEOUT_S}s;
            proxy_send_timeout {PROXY_TIMEOUT_S}s;"""
    return f"""# deptcast load balancer, generated by `deptcast cluster init`: do not edit by hand.
# Run: nginx -p <this directory>/nginx -c <this directory>/nginx.conf
worker_processes 1;
pid nginx.pid;
error_log logs/error.log warn;

events {{
    worker_connections 4096;
}}

http {{
    # $uri, not $request: a legacy client's query string holds its token
    log_format deptcast '$remote_addr [$time_local] "$request_method $uri" $status '
                        'upstream=$upstream_addr time=$request_time';
    access_log logs/access.log deptcast;
    client_body_temp_path tmp/client_body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;

    # the page's scripts are ~400 KB as served by the nodes, ~110 KB compressed
    gzip on;
    gzip_types text/css application/javascript text/javascript application/json;
    gzip_min_length 1024;
    # POST /api/send: the message limit (64 KiB) plus room for the JSON around it
    client_max_body_size 256k;

    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}

    # round robin (nginx's default); a node that refuses connections is skipped (passive
    # health: marked down for 2 s after a failure). Active checks of /health/serving need
    # nginx Plus (health_check) or another balancer (HAProxy: option httpchk GET /health/serving).
    upstream deptcast {{
{servers}
    }}

    # the same nodes for WebSockets, without marking them down: nginx counts a node's
    # failure as cleared only when a connection through it ends, which for a WebSocket is
    # hours later, so after a rolling restart every node would stay "down" and reconnecting
    # clients would get 502 "no live upstreams" (seen in the rolling restart test)
    upstream deptcast_ws {{
{ws_servers}
    }}

    server {{
        listen {listen};

        location /ws {{
{websocket}
        }}

        location /webSocket/ {{
{websocket}
        }}

        # router links connect node to node, never through the balancer
        location /{RLINK_PATH} {{
            return 404;
        }}
{internal_locations(expose_internal)}

        location / {{
            proxy_pass http://deptcast;
            proxy_set_header Host $host;
            proxy_read_timeout {PROXY_TIMEOUT_S}s;
        }}
    }}
}}
"""


@dataclass(frozen=True)
class ClusterLayout:
    """What :func:`init_cluster` wrote."""

    out: Path
    nodes: List[NodeSpec]
    node_dirs: Dict[str, Path]
    nginx_conf: Path
    secret_file: Path


def init_cluster(nodes: Sequence[NodeSpec], db: str, out: Path, root: Optional[Path] = None,
                 lb_listen: str = str(DEFAULT_LB_PORT), expose_internal: bool = False) -> ClusterLayout:
    """Write the node directories and the nginx config; keep existing keys and secret.

    :param root: the checkout holding ``components`` and ``web`` (default: this one)
    :rtype: ClusterLayout
    """
    check_cluster(nodes, db)
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    root = Path(root).resolve() if root else SOURCE_ROOT
    secret_file = out / SECRET_FILE
    # the cluster's one secret, made once (the same code as a quick-start node's)
    secret = read_secret(out, {}, create=True)
    node_dirs = {n.name: out / n.name for n in nodes}
    pubkeys = {n.name: ensure_node_key(node_dirs[n.name]) for n in nodes}
    for n in nodes:
        node_secret = node_dirs[n.name] / SECRET_FILE
        if not node_secret.exists() or node_secret.read_text().strip() != secret:
            _write_private(node_secret, secret + "\n")
        # the config holds the database URL, which may hold a password
        _write_private(node_dirs[n.name] / "config.json", render(cluster_node_config(n, nodes, pubkeys, db, root)))
    nginx_conf = out / "nginx.conf"
    nginx_conf.write_text(nginx_config(nodes, lb_listen, expose_internal))
    write_description(out, nodes)
    for sub in ("logs", "tmp"):
        (out / "nginx" / sub).mkdir(parents=True, exist_ok=True)
    return ClusterLayout(out, list(nodes), node_dirs, nginx_conf, secret_file)


# ----------------------------------------------------------------------------- command line

def _cmd_init(args: argparse.Namespace) -> int:
    nodes = [parse_node_spec(text) for text in args.node]
    layout = init_cluster(nodes, args.db, Path(args.out), Path(args.root) if args.root else None,
                          lb_listen=args.lb_listen, expose_internal=args.expose_internal)
    print(f"wrote a cluster of {len(nodes)} nodes to {layout.out}")
    for n in nodes:
        print(f"  {n.name}: crossbar start --cbdir {layout.node_dirs[n.name]}   (on {n.address})")
    print(f"  load balancer: nginx -p {layout.out / 'nginx'} -c {layout.nginx_conf}")
    print(f"  tokens: deptcast token --cbdir {layout.out} --user U --dept D")
    return 0


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
    nodes = [NodeSpec(f"n{i + 1}", "127.0.0.1", base_port + i) for i in range(3)]
    layout = init_cluster(nodes, db, out, lb_listen=f"127.0.0.1:{lb_port}")
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


def _cmd_demo(args: argparse.Namespace) -> int:
    if not args.db:
        raise ValueError("--db (or DEPTCAST_DB) must name a PostgreSQL database, e.g. "
                         "postgresql://postgres@127.0.0.1:5432/test")
    return run_demo(args.db, Path(args.out), args.base_port, args.lb_port)


def add_cli(sub: "argparse._SubParsersAction") -> None:
    """Add ``deptcast cluster init`` and ``deptcast cluster demo`` to the command line."""
    cluster = sub.add_parser("cluster", help="generate or try out a cluster of nodes",
                             description="Generate a cluster from one description, or run a local demo.")
    csub = cluster.add_subparsers(dest="cluster_command", required=True)
    init = csub.add_parser("init", help="write node directories and an nginx config",
                           description="Write one node directory per --node (key pair, config with a full "
                                       "mesh of router links, shared JWT secret) and nginx.conf. Running it "
                                       "again keeps existing keys and the secret.")
    init.add_argument("--node", action="append", required=True, metavar="NAME=HOST:PORT",
                      help="a node: its name and the address peers and nginx reach it at (repeat)")
    init.add_argument("--db", required=True, help="the PostgreSQL URL all nodes share")
    init.add_argument("--out", default="cluster", help="output directory (default ./cluster)")
    init.add_argument("--lb-listen", default=str(DEFAULT_LB_PORT),
                      help=f"nginx's listen address (default {DEFAULT_LB_PORT})")
    init.add_argument("--root", help="the checkout holding components/ and web/ (default: this one)")
    init.add_argument("--expose-internal", action="store_true",
                      help="let nginx proxy /health and /metrics too (by default they answer 404 there: "
                           "ask each node directly)")
    init.set_defaults(func=_cmd_init)

    demo = csub.add_parser("demo", help="run 3 nodes and nginx on loopback until Ctrl-C",
                           description="Generate a 3-node cluster on loopback, start it and nginx, "
                                       "and stop everything on Ctrl-C.")
    demo.add_argument("--db", default=os.environ.get("DEPTCAST_DB", ""),
                      help="the PostgreSQL URL (default: DEPTCAST_DB)")
    demo.add_argument("--out", default="cluster-demo", help="directory for the nodes (default ./cluster-demo)")
    demo.add_argument("--base-port", type=int, default=8081, help="first node's port (default 8081)")
    demo.add_argument("--lb-port", type=int, default=DEFAULT_LB_PORT,
                      help=f"nginx's port (default {DEFAULT_LB_PORT})")
    demo.set_defaults(func=_cmd_demo)
    add_status_cli(csub)
    add_restart_cli(csub)
