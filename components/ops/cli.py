"""The ``deptcast`` command line: tokens and node configurations here; the cluster's commands
(:mod:`components.ops.clustercli`), ``run`` (:mod:`components.ops.supervisor`), ``send``,
``listen`` and ``receipts`` (:mod:`components.ops.clientcli`), and the operators' ``roster``
and ``revoke`` (:mod:`components.ops.admincli`) add themselves.

    deptcast token --user U --dept D [--role publisher|admin] [--ttl SECONDS]
    deptcast node-config [--port N] [--output FILE]
    deptcast cluster init --node n1=HOST:PORT --node n2=HOST:PORT ... --db postgresql://... --out DIR
    deptcast cluster init --local [N|auto] [--base-port P] --db postgresql://... --out DIR
    deptcast cluster demo --db postgresql://... [--out DIR]
    deptcast run [--cbdir DIR] [-- crossbar start arguments]
    deptcast send --to TO MESSAGE [--key KEY] [--url URL ...] [--token-file PATH | --user U --dept D [--role R]]
    deptcast send --batch FILE.jsonl [...]
    deptcast listen [--state FILE] [--history N] [--format json|text] [--url URL ...] [--token-file PATH | ...]
    deptcast receipts ID [--json] [...]
    deptcast roster import FILE.csv | list DEPT | remove DEPT_USER [--node-dir DIR | --token-file PATH]
    deptcast revoke DEPT_USER [--node-dir DIR | --token-file PATH]
"""

import argparse
import os
import sys
from pathlib import Path
from typing import List, Optional

from components.client.state import StateError
from components.client.contract import ADMIN
from components.client.errors import DeptcastError
from components.core.names import CLIENT_ROLES
from components.core.settings import (DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_NODE_DIR, ConfigError, max_token_ttl,
                                      read_secret)
from components.core.tokens import issue_token
from components.ops.admincli import add_cli as add_admin_cli
from components.ops.clientcli import add_cli as add_client_cli
from components.ops.clustercli import add_cli as add_cluster_cli
from components.ops.nodeconfig import DEFAULT_PORT, node_config, render
from components.ops.supervisor import add_cli as add_run_cli


#: the roles ``deptcast token`` mints
TOKEN_ROLES = tuple(dict.fromkeys((*CLIENT_ROLES, ADMIN)))


def _cmd_token(args: argparse.Namespace) -> int:
    secret = read_secret(Path(args.cbdir), os.environ, create=False)
    print(issue_token(secret, args.user, args.dept, args.role, args.ttl, max_ttl=max_token_ttl(os.environ)))
    return 0


def _cmd_node_config(args: argparse.Namespace) -> int:
    root = Path(args.root).resolve() if args.root else None
    text = render(node_config(port=args.port, root=root, max_message_bytes=args.max_message_bytes))
    if args.output:
        Path(args.output).write_text(text)
        print(f"wrote {args.output} (port {args.port})", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deptcast", description="deptcast: department notifications.")
    sub = parser.add_subparsers(dest="command", required=True)

    token = sub.add_parser("token", help="print a signed token (JWT) for a user",
                           description="Print a token signed with DEPTCAST_JWT_SECRET, or with the "
                                       "node directory's jwt.secret when that variable is unset.")
    token.add_argument("--user", required=True, help="user id (the token's sub)")
    token.add_argument("--dept", required=True, help="department code")
    token.add_argument("--role", default="member", choices=TOKEN_ROLES,
                       help="member (default), publisher, or admin (the operators' procedures)")
    token.add_argument("--ttl", type=int, default=3600, help="seconds until it expires (default 3600)")
    token.add_argument("--cbdir", default=DEFAULT_NODE_DIR,
                       help=f"node directory holding jwt.secret (default {DEFAULT_NODE_DIR})")
    token.set_defaults(func=_cmd_token)

    cfg = sub.add_parser("node-config", help="print or write a single-node Crossbar config",
                         description="Render the node configuration deptcast runs with.")
    cfg.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"web port (default {DEFAULT_PORT})")
    cfg.add_argument("--root", help="the checkout, when the node directory is not <checkout>/.crossbar")
    cfg.add_argument("--max-message-bytes", type=int, default=DEFAULT_MAX_MESSAGE_BYTES,
                     help=f"the message limit (default {DEFAULT_MAX_MESSAGE_BYTES}): sizes the WebSocket limits and, "
                          "if not the default, sets DEPTCAST_MAX_MESSAGE_BYTES in the config")
    cfg.add_argument("--output", "-o", help="write to this file instead of standard output")
    cfg.set_defaults(func=_cmd_node_config)
    add_cluster_cli(sub)
    add_run_cli(sub)

    add_client_cli(sub)
    add_admin_cli(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, ValueError) as e:
        print(f"deptcast: {e}", file=sys.stderr)
        return 2
    except StateError as e:
        print(f"deptcast {args.command}: state file {e}", file=sys.stderr)
        return 2
    except DeptcastError as e:
        print(f"deptcast {args.command}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
