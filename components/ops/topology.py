"""A cluster's nodes: their description (``--node NAME=HOST:PORT[/LINKPORT]``, or ``--local N``
nodes on this machine), the checks a description must pass, and the file that keeps it
beside the generated node directories (``cluster.json``, read by ``deptcast cluster status``
and ``restart``).
"""

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence

#: the link port, when a node's description gives none: the web port plus this
LINK_PORT_OFFSET = 1
#: ``cluster init --local``: the nodes' address, the first node's port by default, and the most
#: nodes it makes (a full mesh: every node holds a link to each of the others)
LOCAL_HOST = "127.0.0.1"
DEFAULT_BASE_PORT = 8081
MAX_LOCAL_NODES = 64
#: the description of a generated cluster, in its output directory
DESCRIPTION = "cluster.json"

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


def port_number(text: str) -> Optional[int]:
    """``text`` as a port (1 to 65535), or ``None``.

    :rtype: int or None
    """
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
    if not sep or not host or port_number(port) is None or (slash and port_number(link) is None):
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
    return port_number(listen.rpartition(":")[2])


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


def spans_hosts(nodes: Sequence[NodeSpec]) -> bool:
    """Whether the nodes are on more than one host, or on one that is not this machine."""
    hosts = {n.host for n in nodes}
    return len(hosts) > 1 or not hosts <= {"127.0.0.1", "::1", "localhost"}


def write_description(out: Path, nodes: Sequence[NodeSpec]) -> Path:
    """Write ``cluster.json`` (the nodes' names and addresses) into ``out``.

    :rtype: Path
    """
    path = Path(out) / DESCRIPTION
    path.write_text(json.dumps({"nodes": [{"name": n.name, "host": n.host, "port": n.port} for n in nodes]},
                               indent=2) + "\n")
    return path


def read_description(out: Path) -> List[NodeSpec]:
    """The nodes of the cluster generated into ``out``.

    :raises ValueError: if ``out`` holds no description
    :rtype: list of NodeSpec
    """
    path = Path(out) / DESCRIPTION
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path} not found: give the directory `deptcast cluster init --out` wrote, "
                         "or the nodes with --node NAME=HOST:PORT") from None
    return [NodeSpec(n["name"], n["host"], int(n["port"])) for n in data["nodes"]]
