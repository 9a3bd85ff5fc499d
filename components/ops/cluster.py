"""A deptcast cluster generated from one description: node directories and an nginx config.

``deptcast cluster init --node n1=HOST:PORT --node n2=... --db postgresql://... --out DIR``
(or ``--local N`` for N nodes on this machine, one per core: the same nodes, listed by
:func:`local_nodes`) writes, for every node, ``DIR/<name>/`` with

- ``key.priv`` / ``key.pub``: the node key pair, made by Crossbar's own key code (kept
  when the generator runs again, so the peers' principals stay valid);
- ``config.json``: the single-node configuration plus a full mesh of router-to-router links
  (rlinks). Each node owns one link to every peer and pulls over it what its own
  subscribers need (``forward_local_events`` only): an event crosses one link at most,
  so nothing is delivered twice. Each link authenticates to the peer's ``/rlink`` path
  with WAMP-cryptosign using the node key; the peer lists that public key as a principal
  of the role :data:`RLINK_ROLE`;
- ``jwt.secret``: the JWT secret every node shares (made once, kept);
- with ``--tls``, ``tls/node.key``, ``tls/node.pem`` and ``tls/ca.pem``: the links then run
  over TLS (``wss://``) on a port of their own, both ends checking the other's certificate
  against the cluster's CA (``DIR/tls/ca.pem``, made once with its key ``DIR/tls/ca.key``
  unless the operator put their own certificates there first; see :mod:`components.ops.tls`).

and ``DIR/nginx.conf``: a round-robin load balancer in front of all nodes, with connection and
request-rate limits per client address, never passing on ``/rlink`` or (except in the local
demo) the quick-start sign-in ``/dev/``.

Files that hold secrets or the database URL are written (and, when they exist, tightened to)
mode 0600, their directories 0700.
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
from typing import Any, Callable, Dict, List, Optional, Sequence

from components.core import names
from components.core.names import RLINK_ROLE
from components.core.settings import PING_INTERVAL_MS, PING_TIMEOUT_MS, SECRET_FILE, read_secret
from components.core.settings import DEFAULT_MAX_MESSAGE_BYTES
from components.ops import tls
from components.ops.nodeconfig import SOURCE_ROOT, node_config, permission, render, websocket_options
from components.ops.process import NodeProcess
from components.ops.rolling import add_cli as add_restart_cli
from components.ops.status import add_cli as add_status_cli, internal_locations, write_description
#: the web path peers' links connect to (not proxied by the load balancer)
RLINK_PATH = "rlink"
#: nginx idle timeouts (s): longer than the WebSocket ping interval plus its timeout
PROXY_TIMEOUT_S = max(60, 3 * (PING_INTERVAL_MS + PING_TIMEOUT_MS) // 1000)
DEFAULT_LB_PORT = 8000
#: per client address at the load balancer: connections held open (every WebSocket is one) and
#: new requests per second (every WebSocket upgrade is one), with the burst allowed above that.
#: Many users behind one NAT share an address: raise these for such sites.
DEFAULT_LB_CONN_PER_IP = 512
DEFAULT_LB_RATE_PER_IP = 50
DEFAULT_LB_BURST = 200
#: the link port, when a node's description gives none: the web port plus this
LINK_PORT_OFFSET = 1

#: ``cluster init --local``: the nodes' address, the first node's port by default, and the most
#: nodes it makes (a full mesh: every node holds a link to each of the others)
LOCAL_HOST = "127.0.0.1"
DEFAULT_BASE_PORT = 8081
MAX_LOCAL_NODES = 64

_NAME_RE = re.compile(r"[a-z][a-z0-9-]{0,31}")


@dataclass(frozen=True)
class NodeSpec:
    """One node of the cluster description.

    :ivar name: a short name (``n1``); it is the node's directory and its link identity
    :ivar host: the address peers and the load balancer reach the node at
    :ivar port: the node's web port (``/``, ``/ws``, ``/webSocket/``, and ``/rlink`` for plain links)
    :ivar link_port: the port of the node's TLS link transport (only with TLS links; default
        the web port plus :data:`LINK_PORT_OFFSET`)
    """

    name: str
    host: str
    port: int
    link_port: Optional[int] = None

    @property
    def address(self) -> str:
        return f"{self.bracketed_host}:{self.port}"

    @property
    def bracketed_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def tls_port(self) -> int:
        """The port peers' TLS links connect to."""
        return self.link_port if self.link_port is not None else self.port + LINK_PORT_OFFSET


def _port(text: str) -> Optional[int]:
    return int(text) if text.isdigit() and 0 < int(text) < 65536 else None


def parse_node_spec(text: str) -> NodeSpec:
    """Read ``NAME=HOST:PORT`` or ``NAME=HOST:PORT/LINKPORT`` (the port of TLS links).

    :raises ValueError: with a message saying what is wrong
    :rtype: NodeSpec
    """
    name, sep, address = text.partition("=")
    if not sep:
        raise ValueError(f"--node {text!r}: use NAME=HOST:PORT, e.g. n1=10.0.0.1:8080")
    if not _NAME_RE.fullmatch(name):
        raise ValueError(f"--node {text!r}: the name must be lower-case letters, digits and '-', "
                         "starting with a letter")
    address, slash, link = address.partition("/")
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or _port(port) is None or (slash and _port(link) is None):
        raise ValueError(f"--node {text!r}: use NAME=HOST:PORT (or NAME=HOST:PORT/LINKPORT) with ports "
                         "from 1 to 65535")
    return NodeSpec(name, host, int(port), int(link) if slash else None)


def local_count(text: str, cpu_count: Optional[Callable[[], Optional[int]]] = None) -> int:
    """Read ``--local``'s value: a number of nodes, or ``auto`` for one node per core.

    :param cpu_count: the machine's core count (default ``os.cpu_count``)
    :raises ValueError: with a message saying what is wrong
    :rtype: int
    """
    text = text.strip().lower()
    if text == "auto":
        cores = (cpu_count or os.cpu_count)() or 1
        if cores < 2:
            raise ValueError(f"auto: this machine has {cores} core, and a cluster needs at least two nodes "
                             "(give --local 2 to run two anyway, or run a single node)")
        return min(cores, MAX_LOCAL_NODES)
    if not re.fullmatch(r"[0-9]{1,6}", text):
        raise ValueError(f"{text!r}: give a number of nodes (2 to {MAX_LOCAL_NODES}) or 'auto' (one per core)")
    count = int(text)
    if not 2 <= count <= MAX_LOCAL_NODES:
        raise ValueError(f"{count}: a local cluster has 2 to {MAX_LOCAL_NODES} nodes")
    return count


def local_nodes(count: int, base_port: int = DEFAULT_BASE_PORT, avoid: Sequence[int] = ()) -> List[NodeSpec]:
    """``count`` nodes on this machine: ``n1`` .. ``nN`` on :data:`LOCAL_HOST`, web ports
    ``base_port`` .. ``base_port+N-1`` and link ports (used with ``--tls``) the next N ports,
    so no port is used twice.

    :param avoid: ports the nodes must not take (the load balancer's)
    :raises ValueError: if the ports run past 65535 or take one of ``avoid``
    :rtype: list of NodeSpec
    """
    ports = range(base_port, base_port + 2 * count)
    if base_port < 1 or ports[-1] > 65535:
        raise ValueError(f"--base-port {base_port}: {count} nodes take ports {base_port}-{ports[-1]} "
                         "(web ports, then link ports), which must lie from 1 to 65535")
    taken = sorted(set(ports) & set(avoid))
    if taken:
        raise ValueError(f"--base-port {base_port}: {count} nodes take ports {base_port}-{ports[-1]} "
                         f"(web ports, then link ports), which includes the load balancer's port {taken[0]}")
    return [NodeSpec(f"n{i + 1}", LOCAL_HOST, base_port + i, base_port + count + i) for i in range(count)]


def listen_port(listen: str) -> Optional[int]:
    """The port of an nginx ``listen`` argument (``8000``, ``127.0.0.1:8000``, ``[::1]:8000``).

    :rtype: int or None
    """
    return _port(listen.rpartition(":")[2])


def check_cluster(nodes: Sequence[NodeSpec], db: str, use_tls: bool = False) -> None:
    """Refuse descriptions that cannot work.

    :param use_tls: the nodes' link ports must not clash with the cluster's other ports either
    :raises ValueError: duplicate names or addresses, fewer than two nodes, no PostgreSQL URL
    """
    if len(nodes) < 2:
        raise ValueError("a cluster needs at least two --node entries")
    seen_names = [n.name for n in nodes]
    if len(set(seen_names)) != len(seen_names):
        raise ValueError("node names must be unique")
    if len({(n.host, n.port) for n in nodes}) != len(nodes):
        raise ValueError("node addresses must be unique")
    ports = [(n.host, p) for n in nodes for p in (n.port, n.tls_port)]
    if use_tls and len(set(ports)) != len(ports):
        raise ValueError("a node's link port (PORT+1 unless given as HOST:PORT/LINKPORT) must not be "
                         "another port of the cluster on the same host")
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
    """Write ``text`` to ``path``, readable by its owner only (keys, secrets, database URLs).

    An existing file is tightened to 0600 before it is written (``os.open``'s mode only
    applies to a file it creates)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _tighten(path: Path, mode: int) -> None:
    """Set ``path``'s mode to ``mode`` if it exists (files made by other code: keys, secrets)."""
    if path.exists():
        path.chmod(mode)


def rlink_role() -> Dict[str, Any]:
    """The role of peers' link sessions: subscribe and publish on deptcast's topics, nothing else."""
    return {"name": RLINK_ROLE, "permissions": [permission("deptcast.", publish=True, subscribe=True)]}


def rlink_path(peers: Sequence[NodeSpec], pubkeys: Dict[str, str],
               max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Dict[str, Any]:
    """The ``/rlink`` WebSocket path: WAMP-cryptosign, one principal per peer node."""
    return {
        "type": "websocket",
        "serializers": ["cbor", "msgpack", "json"],
        "auth": {"cryptosign": {"type": "static", "principals": {
            peer.name: {"realm": names.REALM, "role": RLINK_ROLE, "authorized_keys": [pubkeys[peer.name]]}
            for peer in peers
        }}},
        "options": websocket_options(max_message_bytes),
    }


def tls_link_transport(me: NodeSpec, peers: Sequence[NodeSpec], pubkeys: Dict[str, str],
                       max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Dict[str, Any]:
    """The TLS link port: a WebSocket transport that only peers reach, with the node's
    certificate, requiring a client certificate from the cluster's CA (mutual TLS; Crossbar
    asks for the peer's certificate whenever ``ca_certificates`` is set), and the same
    cryptosign principals as the plain ``/rlink`` path.

    :rtype: dict
    """
    endpoint: Dict[str, Any] = {"type": "tcp", "port": me.tls_port, "tls": tls.server_tls(),
                                "backlog": 64}
    interface = _listen_interface(me.host)
    if interface:
        endpoint["interface"] = interface
    path = rlink_path(peers, pubkeys, max_message_bytes)
    return {"type": "websocket", "endpoint": endpoint, **{k: path[k] for k in ("serializers", "auth", "options")}}


def rlink(me: NodeSpec, peer: NodeSpec, use_tls: bool = False) -> Dict[str, Any]:
    """The link ``me`` owns to ``peer``: it pulls the events ``me``'s own subscribers need.

    On the owning node's side (the link's *local* leg), ``forward_local_events`` means:
    for every subscription made on this node, subscribe on the peer and re-publish what
    arrives here. Calls are never forwarded: every node registers its own procedures.

    :param use_tls: connect to the peer's TLS link port (``wss://``), checking its certificate
        (its host name or address) against the cluster's CA and showing this node's own
    """
    if use_tls:
        endpoint = {"type": "tcp", "host": peer.host, "port": peer.tls_port, "timeout": 5,
                    "tls": tls.client_tls(peer.host)}
        url = f"wss://{peer.bracketed_host}:{peer.tls_port}/{RLINK_PATH}"
    else:
        endpoint = {"type": "tcp", "host": peer.host, "port": peer.port, "timeout": 5}
        url = f"ws://{peer.address}/{RLINK_PATH}"
    return {
        "id": f"to-{peer.name}",
        "realm": names.REALM,
        "authid": me.name,
        "transport": {
            "type": "websocket",
            "endpoint": endpoint,
            "url": url,
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
                        root: Optional[Path] = None, use_tls: bool = False,
                        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Dict[str, Any]:
    """The Crossbar configuration of node ``me`` in the cluster ``nodes``.

    :param pubkeys: node name to public key (hex)
    :param db: the PostgreSQL URL all nodes share
    :param root: the checkout holding ``components`` and ``web``
    :param use_tls: links over TLS on each node's link port; the web port then serves no
        ``/rlink`` at all
    :rtype: dict
    """
    peers = [n for n in nodes if n.name != me.name]
    env = {"DEPTCAST_DB": db, "DEPTCAST_NODE": me.name,
           "DEPTCAST_PEERS": ",".join(p.name for p in peers)}
    if use_tls:
        paths: Dict[str, Any] = {}
        transports = [tls_link_transport(me, peers, pubkeys, max_message_bytes)]
    else:
        paths = {RLINK_PATH: rlink_path(peers, pubkeys, max_message_bytes)}
        transports = []
    return node_config(port=me.port, root=root, interface=_listen_interface(me.host),
                       extra_roles=[rlink_role()], extra_paths=paths, extra_transports=transports,
                       rlinks=[rlink(me, p, use_tls) for p in peers], env=env,
                       max_message_bytes=max_message_bytes)


def nginx_config(nodes: Sequence[NodeSpec], listen: str = str(DEFAULT_LB_PORT), dev: bool = False,
                 conn_per_ip: int = DEFAULT_LB_CONN_PER_IP, rate_per_ip: int = DEFAULT_LB_RATE_PER_IP,
                 burst: int = DEFAULT_LB_BURST, expose_internal: bool = False) -> str:
    """A complete nginx configuration: round robin over ``nodes`` for ``/``, ``/ws`` and
    ``/webSocket/`` (WebSocket upgrade, idle timeouts longer than the ping interval).

    Paths (pid, logs, temp files) are relative, so ``nginx -p DIR -c FILE`` keeps them in
    ``DIR``; ``/rlink`` is not proxied (404): peers connect to each other directly. Every
    request passed on carries ``X-Forwarded-For``. Each client address may hold
    ``conn_per_ip`` connections and open ``rate_per_ip`` requests per second (``burst`` more
    at once); past that nginx answers 429.

    :param listen: nginx's ``listen`` argument, e.g. ``8000`` or ``127.0.0.1:8000``
    :param dev: the local demo's balancer: pass the quick-start sign-in ``/dev/`` on (to
        clients on this machine only); otherwise ``/dev/`` is answered 404 by nginx itself
    :param expose_internal: proxy ``/health`` and ``/metrics`` too (else 404: scrape each node)
    :rtype: str
    """
    servers = "\n".join(f"        server {n.address} max_fails=1 fail_timeout=2s;" for n in nodes)
    ws_servers = "\n".join(f"        server {n.address} max_fails=0;" for n in nodes)
    forwarded = """            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;"""
    websocket = f"""            proxy_pass http://deptcast_ws;
            # a node that is stopping (or down) refuses at once: the next one is tried
            proxy_next_upstream error timeout;
            proxy_connect_timeout 2s;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
{forwarded}
            proxy_buffering off;
            proxy_read_timeout {PROXY_TIMEOUT_S}s;
            proxy_send_timeout {PROXY_TIMEOUT_S}s;"""
    if dev:
        dev_location = """        # the local demo's sign-in form: passed on without proxy headers (the node answers
        # requests from this machine only, and refuses any that a proxy marked)
        location /dev/ {
            allow 127.0.0.1;
            allow ::1;
            deny all;
            proxy_pass http://deptcast;
            proxy_set_header Host $host;
        }"""
    else:
        dev_location = """        # the quick-start sign-in mints any token: never reachable through the balancer
        location /dev/ {
            return 404;
        }"""
    return f"""# deptcast load balancer, generated by `deptcast cluster init`: do not edit by hand.
# Run: nginx -p <this directory>/nginx -c <this directory>/nginx.conf
worker_processes 1;
pid nginx.pid;
error_log logs/error.log warn;

events {{
    worker_connections 4096;
}}

http {{
    # $uri, not $request: a legacy client's query string holds its token. (The error log
    # writes the whole request line when an upstream is down: pages that pass their token in
    # the Sec-WebSocket-Protocol header keep it out of there too.)
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
    client_header_timeout 10s;
    client_body_timeout 10s;

    # per client address: connections held open (each WebSocket is one) and requests per
    # second (each WebSocket upgrade is one); many users behind one NAT share an address
    limit_conn_zone $binary_remote_addr zone=deptcast_conn:10m;
    limit_req_zone $binary_remote_addr zone=deptcast_req:10m rate={rate_per_ip}r/s;
    limit_conn_status 429;
    limit_req_status 429;
    limit_conn_log_level warn;
    limit_req_log_level warn;

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
        limit_conn deptcast_conn {conn_per_ip};
        limit_req zone=deptcast_req burst={burst} nodelay;

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

{dev_location}
{internal_locations(expose_internal)}

        location / {{
            proxy_pass http://deptcast;
{forwarded}
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
                 lb_listen: str = str(DEFAULT_LB_PORT), use_tls: bool = False, dev: bool = False,
                 lb_conn_per_ip: int = DEFAULT_LB_CONN_PER_IP, lb_rate_per_ip: int = DEFAULT_LB_RATE_PER_IP,
                 lb_burst: int = DEFAULT_LB_BURST,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, expose_internal: bool = False) -> ClusterLayout:
    """Write the node directories and the nginx config; keep existing keys, secret and
    certificates; leave every file with a secret (or the database URL) mode 0600 and every
    directory holding one 0700, however they were before.

    :param root: the checkout holding ``components`` and ``web`` (default: this one)
    :param use_tls: links over TLS with certificates from the cluster's CA (made if missing)
    :param dev: the balancer of the local demo (passes the quick-start sign-in on)
    :rtype: ClusterLayout
    """
    check_cluster(nodes, db, use_tls)
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    out.chmod(0o700)
    root = Path(root).resolve() if root else SOURCE_ROOT
    secret_file = out / SECRET_FILE
    # the cluster's one secret, made once (the same code as a quick-start node's)
    secret = read_secret(out, {}, create=True)
    _tighten(secret_file, 0o600)
    node_dirs = {n.name: out / n.name for n in nodes}
    pubkeys = {}
    for n in nodes:
        pubkeys[n.name] = ensure_node_key(node_dirs[n.name])
        node_dirs[n.name].chmod(0o700)
        _tighten(node_dirs[n.name] / "key.priv", 0o600)
    if use_tls:
        tls.ensure_cluster_certificates(out, [(n.name, n.host) for n in nodes])
    for n in nodes:
        node_secret = node_dirs[n.name] / SECRET_FILE
        if not node_secret.exists() or node_secret.read_text().strip() != secret:
            _write_private(node_secret, secret + "\n")
        _tighten(node_secret, 0o600)
        # the config holds the database URL, which may hold a password
        _write_private(node_dirs[n.name] / "config.json",
                       render(cluster_node_config(n, nodes, pubkeys, db, root, use_tls, max_message_bytes)))
    nginx_conf = out / "nginx.conf"
    nginx_conf.write_text(nginx_config(nodes, lb_listen, dev=dev, conn_per_ip=lb_conn_per_ip,
                                       rate_per_ip=lb_rate_per_ip, burst=lb_burst,
                                       expose_internal=expose_internal))
    write_description(out, nodes)
    for sub in ("logs", "tmp"):
        (out / "nginx" / sub).mkdir(parents=True, exist_ok=True)
    return ClusterLayout(out, list(nodes), node_dirs, nginx_conf, secret_file)


def _spans_hosts(nodes: Sequence[NodeSpec]) -> bool:
    """Whether the nodes are on more than one host, or on one that is not this machine."""
    hosts = {n.host for n in nodes}
    return len(hosts) > 1 or not hosts <= {"127.0.0.1", "::1", "localhost"}


# ----------------------------------------------------------------------------- command line

def _local_nodes_of(args: argparse.Namespace) -> Optional[List[NodeSpec]]:
    """The nodes of ``--local`` (``None`` with ``--node``); a bad combination is an argparse error."""
    parser: argparse.ArgumentParser = args.init_parser
    if args.local is None:
        if args.base_port is not None:
            parser.error("--base-port goes with --local (with --node, each node's port is in its entry)")
        return None
    lb_port = listen_port(args.lb_listen)
    try:
        return local_nodes(args.local, args.base_port or DEFAULT_BASE_PORT, [lb_port] if lb_port else [])
    except ValueError as e:
        parser.error(str(e))


def _cmd_init(args: argparse.Namespace) -> int:
    nodes = _local_nodes_of(args) or [parse_node_spec(text) for text in args.node]
    layout = init_cluster(nodes, args.db, Path(args.out), Path(args.root) if args.root else None,
                          lb_listen=args.lb_listen, use_tls=args.tls, lb_conn_per_ip=args.lb_conn_per_ip,
                          lb_rate_per_ip=args.lb_rate_per_ip, lb_burst=args.lb_burst,
                          max_message_bytes=args.max_message_bytes, expose_internal=args.expose_internal)
    print(f"wrote a cluster of {len(nodes)} nodes to {layout.out}")
    for n in nodes:
        links = f", TLS links on port {n.tls_port}" if args.tls else ""
        print(f"  {n.name}: crossbar start --cbdir {layout.node_dirs[n.name]}   (on {n.address}{links})")
    if not args.tls and _spans_hosts(nodes):
        print("  warning: the links between the nodes are plain WebSocket (the traffic, though not the "
              "link authentication, can be read on the network): use --tls across hosts", file=sys.stderr)
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


def _cmd_demo(args: argparse.Namespace) -> int:
    if not args.db:
        raise ValueError("--db (or DEPTCAST_DB) must name a PostgreSQL database, e.g. "
                         "postgresql://postgres@127.0.0.1:5432/test")
    return run_demo(args.db, Path(args.out), args.base_port, args.lb_port)


def _local_count_arg(text: str) -> int:
    try:
        return local_count(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _port_arg(text: str) -> int:
    port = _port(text.strip())
    if port is None:
        raise argparse.ArgumentTypeError(f"{text!r}: a port from 1 to 65535")
    return port


def add_cli(sub: "argparse._SubParsersAction") -> None:
    """Add ``deptcast cluster init`` and ``deptcast cluster demo`` to the command line."""
    cluster = sub.add_parser("cluster", help="generate or try out a cluster of nodes",
                             description="Generate a cluster from one description, or run a local demo.")
    csub = cluster.add_subparsers(dest="cluster_command", required=True)
    init = csub.add_parser("init", help="write node directories and an nginx config",
                           description="Write one node directory per --node, or per node of --local (key pair, "
                                       "config with a full mesh of router links, shared JWT secret) and "
                                       "nginx.conf. Running it again keeps existing keys and the secret.")
    where = init.add_mutually_exclusive_group(required=True)
    where.add_argument("--node", action="append", metavar="NAME=HOST:PORT[/LINKPORT]",
                       help="a node: its name and the address peers and nginx reach it at (repeat); "
                            "LINKPORT: its TLS link port (default PORT+1)")
    where.add_argument("--local", nargs="?", const="auto", type=_local_count_arg, metavar="N|auto",
                       help=f"instead of --node: N nodes n1..nN on {LOCAL_HOST}, one per core with 'auto' "
                            "(the default when N is left out)")
    init.add_argument("--base-port", type=_port_arg,
                      help=f"with --local: the first node's port (default {DEFAULT_BASE_PORT}); the nodes take "
                           "N web ports from it, then N link ports")
    init.add_argument("--db", required=True, help="the PostgreSQL URL all nodes share")
    init.add_argument("--out", default="cluster", help="output directory (default ./cluster)")
    init.add_argument("--lb-listen", default=str(DEFAULT_LB_PORT),
                      help=f"nginx's listen address (default {DEFAULT_LB_PORT})")
    init.add_argument("--root", help="the checkout holding components/ and web/ (default: this one)")
    init.add_argument("--tls", action="store_true",
                      help="links over TLS (wss://) on each node's link port, with certificates from the "
                           "cluster's CA: made in OUT/tls unless you put yours there first")
    init.add_argument("--lb-conn-per-ip", type=int, default=DEFAULT_LB_CONN_PER_IP,
                      help=f"connections nginx lets one client address hold (default {DEFAULT_LB_CONN_PER_IP})")
    init.add_argument("--lb-rate-per-ip", type=int, default=DEFAULT_LB_RATE_PER_IP,
                      help=f"requests per second per client address (default {DEFAULT_LB_RATE_PER_IP})")
    init.add_argument("--lb-burst", type=int, default=DEFAULT_LB_BURST,
                      help=f"requests a client address may make at once above the rate (default {DEFAULT_LB_BURST})")
    init.add_argument("--max-message-bytes", type=int, default=DEFAULT_MAX_MESSAGE_BYTES,
                      help=f"the message limit (default {DEFAULT_MAX_MESSAGE_BYTES}); sizes the nodes' WebSocket limits")
    init.add_argument("--expose-internal", action="store_true",
                      help="let nginx proxy /health and /metrics too (by default they answer 404 there: "
                           "ask each node directly)")
    init.set_defaults(func=_cmd_init, init_parser=init)

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
