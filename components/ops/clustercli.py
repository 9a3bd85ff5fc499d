"""``deptcast cluster``: its subcommands on the command line. ``init`` writes a cluster
(:func:`components.ops.cluster.init_cluster`), ``demo`` runs one on this machine
(:mod:`components.ops.demo`); ``status`` (:mod:`components.ops.status`) and ``restart``
(:mod:`components.ops.rolling`) add themselves.
"""

import argparse
import os
import sys
from pathlib import Path
from typing import List, Optional

from components.core.settings import DEFAULT_MAX_MESSAGE_BYTES
from components.ops.cluster import init_cluster
from components.ops.demo import run_demo
from components.ops.nginx import DEFAULT_LB_BURST, DEFAULT_LB_CONN_PER_IP, DEFAULT_LB_PORT, DEFAULT_LB_RATE_PER_IP
from components.ops.rolling import add_cli as add_restart_cli
from components.ops.status import add_cli as add_status_cli
from components.ops.topology import (DEFAULT_BASE_PORT, LOCAL_HOST, NodeSpec, listen_port, local_count, local_nodes,
                                     parse_node_spec, port_number, spans_hosts)


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
    if not args.tls and spans_hosts(nodes):
        print("  warning: the links between the nodes are plain WebSocket (the traffic, though not the "
              "link authentication, can be read on the network): use --tls across hosts", file=sys.stderr)
    print(f"  load balancer: nginx -p {layout.out / 'nginx'} -c {layout.nginx_conf}")
    print(f"  tokens: deptcast token --cbdir {layout.out} --user U --dept D")
    return 0


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
    port = port_number(text.strip())
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
                      help=f"the message limit (default {DEFAULT_MAX_MESSAGE_BYTES}); "
                           "sizes the nodes' WebSocket limits")
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
