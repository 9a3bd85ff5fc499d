"""A deptcast cluster written from one description (:mod:`components.ops.topology`): node
directories and an nginx config.

``deptcast cluster init --node n1=HOST:PORT --node n2=... --db postgresql://... --out DIR``
(or ``--local N`` for N nodes on this machine, one per core: the same nodes, listed by
:func:`~components.ops.topology.local_nodes`) writes, for every node, ``DIR/<name>/`` with

- ``key.priv`` / ``key.pub``: the node key pair, made by Crossbar's own key code (kept
  when the generator runs again, so the peers' principals stay valid);
- ``config.json``: the single-node configuration plus a full mesh of router-to-router links
  (:mod:`components.ops.meshconfig`);
- ``jwt.secret``: the JWT secret every node shares (made once, kept);
- with ``--tls``, ``tls/node.key``, ``tls/node.pem`` and ``tls/ca.pem``: the links then run
  over TLS (``wss://``) on a port of their own, both ends checking the other's certificate
  against the cluster's CA (``DIR/tls/ca.pem``, made once with its key ``DIR/tls/ca.key``
  unless the operator put their own certificates there first; see :mod:`components.ops.tls`).

and ``DIR/nginx.conf``: a round-robin load balancer in front of all nodes
(:mod:`components.ops.nginx`), and ``DIR/cluster.json``: the description, for ``deptcast cluster
status`` and ``restart``.

Files that hold secrets or the database URL are written (and, when they exist, tightened to)
mode 0600, their directories 0700.
"""

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from components.core.settings import DEFAULT_MAX_MESSAGE_BYTES, SECRET_FILE, read_secret
from components.ops import tls
from components.ops.meshconfig import cluster_node_config
from components.ops.nginx import (DEFAULT_LB_BURST, DEFAULT_LB_CONN_PER_IP, DEFAULT_LB_PORT, DEFAULT_LB_RATE_PER_IP,
                                  nginx_config)
from components.ops.nodeconfig import SOURCE_ROOT, render
from components.ops.topology import NodeSpec, check_cluster, write_description


def ensure_node_key(node_dir: Path) -> str:
    """Make the node key pair with Crossbar's own key code unless it exists; return the
    public key (hex).

    :rtype: str
    """
    # imported here, not at the top: Crossbar takes about 2 s to import, which the commands
    # that make no keys (and the modules that only describe a cluster) need not pay
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
