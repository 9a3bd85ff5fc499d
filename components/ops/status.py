"""``deptcast cluster status``: every node's ``/health``, one line per node.

The nodes come from the cluster description ``cluster init`` writes beside the node
directories (``cluster.json``: each node's name, host and port), or from ``--node`` entries
as for ``init``. Each node is asked directly (never through the balancer, which does not
proxy ``/health``). The exit code is 0 when every node is healthy, 1 otherwise.
"""

import argparse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple

from components.ops.probe import Health, get_health
from components.ops.topology import NodeSpec, parse_node_spec, read_description


def link_text(peer: str, link: Any) -> str:
    """``n2 up``, ``n2 DOWN``, or ``n2 in up, out DOWN`` when the two directions differ.

    :rtype: str
    """
    ways = {way: "up" if link.get(way) == "up" else "DOWN" for way in ("in", "out")}
    if ways["in"] == ways["out"]:
        return f"{peer} {ways['in']}"
    return f"{peer} in {ways['in']}, out {ways['out']}"


def node_line(name: str, address: str, health: Optional[Health]) -> str:
    """One node's line: status, serving, links, sessions, store, and what is wrong.

    :rtype: str
    """
    if health is None:
        return f"{name:<8} {address:<21} unreachable: no answer on /health"
    body = health.body
    links = body.get("links", {})
    shown = "; ".join(link_text(peer, link) for peer, link in sorted(links.items())) or "none"
    sessions = body.get("sessions", {})
    store = body.get("store", {})
    line = (f"{name:<8} {address:<21} {body.get('status', '?'):<9} "
            f"{'serving' if body.get('serving') else 'NOT serving'}  links: {shown}  "
            f"sessions: {sessions.get('wamp', 0)} wamp, {sessions.get('legacy', 0)} legacy  "
            f"store: {store.get('kind', '?')} writes {store.get('writes', '?')}, reads {store.get('reads', '?')}")
    problems = body.get("problems") or []
    if problems:
        line += "  problems: " + "; ".join(problems)
    return line


def cluster_status(nodes: Sequence[NodeSpec], timeout: float = 3.0) -> Tuple[List[str], bool]:
    """Ask every node at once; the lines in the nodes' order, and whether all are healthy.

    :rtype: tuple
    """
    def ask(node):
        return get_health(node.host, node.port, timeout=timeout)
    with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
        answers = list(pool.map(ask, nodes))
    lines = [node_line(n.name, n.address, h) for n, h in zip(nodes, answers)]
    return lines, all(h is not None and h.ok for h in answers)


def nodes_of(args: argparse.Namespace) -> List[NodeSpec]:
    """The nodes named by ``--node`` entries, else by the description in ``--cluster``.

    :rtype: list of NodeSpec
    """
    if args.node:
        return [parse_node_spec(text) for text in args.node]
    return read_description(Path(args.cluster))


def _cmd_status(args: argparse.Namespace) -> int:
    lines, healthy = cluster_status(nodes_of(args), args.timeout)
    for line in lines:
        print(line)
    return 0 if healthy else 1


def add_node_arguments(parser: argparse.ArgumentParser) -> None:
    """``--cluster DIR`` and ``--node NAME=HOST:PORT``: where the nodes are."""
    parser.add_argument("--cluster", default="cluster",
                        help="the directory `deptcast cluster init --out` wrote (default ./cluster)")
    parser.add_argument("--node", action="append", metavar="NAME=HOST:PORT",
                        help="a node, instead of the description in --cluster (repeat)")


def add_cli(csub: Any) -> None:
    """Add ``deptcast cluster status``."""
    status = csub.add_parser("status", help="one line per node from its /health; exit 1 if any is unwell",
                             description="Ask every node's /health directly and print one line per node: "
                                         "status, serving, links, sessions, store, problems. Exit code 0 when "
                                         "every node is healthy, else 1.")
    add_node_arguments(status)
    status.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for each node (default 3)")
    status.set_defaults(func=_cmd_status)
