"""The ``deptcast`` command line: tokens, node configurations, and a client that sends and listens.

    deptcast token --user U --dept D [--role publisher] [--ttl SECONDS]
    deptcast node-config [--port N] [--output FILE]
    deptcast cluster init --node n1=HOST:PORT --node n2=HOST:PORT ... --db postgresql://... --out DIR
    deptcast cluster init --local [N|auto] [--base-port P] --db postgresql://... --out DIR
    deptcast cluster demo --db postgresql://... [--out DIR]
    deptcast run [--cbdir DIR] [-- crossbar start arguments]
    deptcast send --to TO MESSAGE [--url URL ...] [--token T | --user U --dept D [--role R]]
    deptcast listen [--state FILE] [--history N] [--format json|text] [--url URL ...] [--token T | ...]
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

from components.ops.clustercli import add_cli as add_cluster_cli
from components.ops.supervisor import add_cli as add_run_cli
from components.core.settings import DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_NODE_DIR, ConfigError, read_secret
from components.ops.nodeconfig import DEFAULT_PORT, node_config, render
from components.core.names import CLIENT_ROLES
from components.core.tokens import issue_token


def _cmd_token(args: argparse.Namespace) -> int:
    secret = read_secret(Path(args.cbdir), os.environ, create=False)
    print(issue_token(secret, args.user, args.dept, args.role, args.ttl))
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


# -- send and listen: the Python client (components.client) on the command line

#: exit status of a refusal or an unreachable node (bad input: 2, as argparse)
EXIT_REFUSED = 1
#: the longest token accepted on the command line or in DEPTCAST_TOKEN
MAX_TOKEN_CHARS = 8192


def node_urls(args: argparse.Namespace, env: Dict[str, str]) -> List[str]:
    """``--url`` (repeatable, comma-separated), else ``DEPTCAST_URL``, else the local node.

    :raises ValueError: for a malformed URL
    :rtype: list
    """
    from components.client.connector import DEFAULT_URL, parse_urls
    return parse_urls(args.url or [env.get("DEPTCAST_URL") or DEFAULT_URL])


def token_source(args: argparse.Namespace, env: Dict[str, str]) -> Union[str, Callable[[], str]]:
    """The token: ``--token``; or, with ``--user`` and ``--dept``, one minted with the node's
    secret on every connect (so a long ``listen`` never runs on an expired one); else
    ``DEPTCAST_TOKEN``.

    :raises ValueError: if there is none, or both ways are given
    :raises ConfigError: if a token must be minted and there is no secret
    """
    if args.token is not None and (args.user or args.dept):
        raise ValueError("give --token, or --user and --dept to mint one; not both")
    if args.user or args.dept:
        if not (args.user and args.dept):
            raise ValueError("--user and --dept go together (they mint a token with the node's secret)")
        secret = read_secret(Path(args.cbdir), env, create=False)
        issue_token(secret, args.user, args.dept, args.role, args.ttl)  # bad names fail here, once

        def mint() -> str:
            return issue_token(secret, args.user, args.dept, args.role, args.ttl)
        return mint
    token = args.token if args.token is not None else env.get("DEPTCAST_TOKEN", "")
    token = token.strip()
    if not token:
        raise ValueError("no token: give --token (or set DEPTCAST_TOKEN), or --user and --dept to mint one "
                         "with the node's secret")
    if len(token) > MAX_TOKEN_CHARS or any(c.isspace() for c in token):
        raise ValueError("the token is not a JWT (too long, or it holds spaces)")
    return token


def _printable(text: str) -> str:
    """``text`` with control characters shown as escapes: a message cannot drive the terminal."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)


def format_envelope(envelope: Dict[str, Any], style: str) -> str:
    """One output line for an envelope: the JSON as the node sent it, or a readable line.

    :rtype: str
    """
    if style == "json":
        return json.dumps(envelope, ensure_ascii=False)
    ts = envelope.get("ts")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts / 1000)) if isinstance(ts, int) else "?"
    scope, target = envelope.get("scope"), envelope.get("target")
    to = "All" if scope == "all" else (f"you ({target})" if scope == "user" else str(target))
    sender = f"{envelope.get('sender')}@{envelope.get('sender_dept')}"
    return _printable(f"{when}  {sender} -> {to}: {envelope.get('message')}")


def _client_error(e: BaseException) -> Optional[str]:
    """The one line a user sees for an error the client raised (``None``: not one of ours)."""
    from components.client.errors import DeptcastError
    from components.client.state import StateError
    if isinstance(e, DeptcastError):
        return _printable(str(e))
    if isinstance(e, StateError):
        return _printable(f"state file {e}")
    return None


def _run_reactor(main: Callable[[Any], Any]) -> int:
    """Run ``main(reactor)`` (a Deferred of an exit status) on the Twisted reactor."""
    from twisted.internet import defer, reactor
    from twisted.internet.error import ReactorNotRunning

    outcome: List[int] = []

    def finish(result: Any) -> None:
        outcome.append(result if isinstance(result, int) else 0)
        try:
            reactor.stop()
        except ReactorNotRunning:
            pass  # already stopping (a signal): the shutdown trigger has left cleanly

    def crashed(failure: Any) -> None:
        print(f"deptcast: {failure.getErrorMessage()}", file=sys.stderr)
        finish(EXIT_REFUSED)

    reactor.callWhenRunning(lambda: defer.ensureDeferred(main(reactor)).addCallbacks(finish, crashed))
    reactor.run()
    return outcome[0] if outcome else 0


def _quiet_logs(verbose: bool) -> None:
    """Log to stderr: connections and retries with ``--verbose``, else only what breaks.
    Standard output stays the command's own (not redirected into the log)."""
    import txaio
    from twisted.logger import (FilteringLogObserver, LogLevel, LogLevelFilterPredicate, globalLogBeginner,
                                textFileLogObserver)
    level = LogLevel.info if verbose else LogLevel.critical
    txaio.set_global_log_level("info" if verbose else "critical")
    observer = FilteringLogObserver(textFileLogObserver(sys.stderr),
                                    [LogLevelFilterPredicate(defaultLogLevel=level)])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)


def _cmd_send(args: argparse.Namespace) -> int:
    urls = node_urls(args, dict(os.environ))
    token = token_source(args, dict(os.environ))
    if args.timeout <= 0:
        raise ValueError("--timeout must be a positive number of seconds")
    from components.client.tx import Client
    _quiet_logs(args.verbose)

    async def main(reactor: Any) -> int:
        client = Client(urls, token, listen=False)
        client.start().addErrback(lambda f: None)  # its error reaches send() too
        try:
            envelope = await client.send(args.to, args.message, timeout=args.timeout)
        except Exception as e:
            message = _client_error(e)
            if message is None:
                raise
            print(f"deptcast send: {message}", file=sys.stderr)
            return EXIT_REFUSED
        finally:
            await client.stop()
        print(json.dumps(envelope, ensure_ascii=False))
        return 0
    return _run_reactor(main)


def _cmd_listen(args: argparse.Namespace) -> int:
    urls = node_urls(args, dict(os.environ))
    token = token_source(args, dict(os.environ))
    if not 0 <= args.history <= 10000:
        raise ValueError("--history must be a whole number from 0 to 10000")
    from components.client.state import FileState
    from components.client.tx import Client
    state = None
    if args.state:
        state = FileState(args.state)
        try:
            state.load()  # a state file that cannot be read, or is in use, stops here with its reason
        except Exception:
            state.unlock()
            raise
    _quiet_logs(args.verbose)
    out = sys.stdout

    async def main(reactor: Any) -> int:
        client = Client(urls, token, state=state, history=args.history)
        stopped = client.when_stopped()
        broken: List[bool] = []

        def show(envelope: Dict[str, Any]) -> None:
            if broken:
                return
            try:
                out.write(format_envelope(envelope, args.format) + "\n")
                out.flush()
            except BrokenPipeError:
                # the reader went away (e.g. `| head`): stop quietly; stdout goes nowhere from
                # now on, so that exiting does not complain about the closed pipe either
                broken.append(True)
                os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
                client.stop()

        def connection(up: bool, details: Any) -> None:
            if up:
                node = (details.authextra or {}).get("x_cb_node", "")
                print(f"deptcast listen: connected{' to ' + node if node else ''} as "
                      f"{details.authextra.get('dept')}_{details.authid}", file=sys.stderr, flush=True)
            else:
                print("deptcast listen: connection lost; reconnecting", file=sys.stderr, flush=True)

        client.on_envelope(show)
        client.on_connection(connection)
        reactor.addSystemEventTrigger("before", "shutdown", client.stop)  # Ctrl-C, SIGTERM: leave cleanly
        client.start().addErrback(lambda f: None)  # its error reaches `stopped` too
        try:
            await stopped
        except Exception as e:
            message = _client_error(e)
            if message is None:
                raise
            print(f"deptcast listen: {message}", file=sys.stderr)
            return EXIT_REFUSED
        return 0
    try:
        return _run_reactor(main)
    finally:
        if state is not None:
            state.unlock()


def _add_client_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", action="append", metavar="URL",
                        help="node WebSocket URL; repeat it or separate with commas for a cluster's nodes "
                             "(default: DEPTCAST_URL, else ws://localhost:8080/ws)")
    parser.add_argument("--token", help="the JWT (default: DEPTCAST_TOKEN)")
    parser.add_argument("--user", help="mint a token for this user with the node's secret (with --dept)")
    parser.add_argument("--dept", help="the minted token's department")
    parser.add_argument("--role", default="member", choices=CLIENT_ROLES, help="the minted token's role")
    parser.add_argument("--ttl", type=int, default=3600, help="the minted token's lifetime in seconds")
    parser.add_argument("--cbdir", default=DEFAULT_NODE_DIR,
                        help=f"node directory whose jwt.secret mints tokens when DEPTCAST_JWT_SECRET is unset "
                             f"(default {DEFAULT_NODE_DIR})")
    parser.add_argument("--verbose", "-v", action="store_true", help="log connections and retries to stderr")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deptcast", description="deptcast: department notifications.")
    sub = parser.add_subparsers(dest="command", required=True)

    token = sub.add_parser("token", help="print a signed token (JWT) for a user",
                           description="Print a token signed with DEPTCAST_JWT_SECRET, or with the "
                                       "node directory's jwt.secret when that variable is unset.")
    token.add_argument("--user", required=True, help="user id (the token's sub)")
    token.add_argument("--dept", required=True, help="department code")
    token.add_argument("--role", default="member", choices=CLIENT_ROLES, help="member (default) or publisher")
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

    send = sub.add_parser("send", help="send a message and print the stored envelope",
                          description="Send MESSAGE to a department, a user (<dept>_<user>) or All. Prints the "
                                      "envelope as JSON and exits 0; a refusal prints its error URI and reason "
                                      "and exits 1. 'unavailable' is retried until --timeout.")
    send.add_argument("--to", required=True, help="a department code, All, or a user key <dept>_<user>")
    send.add_argument("message", help="the message text")
    send.add_argument("--timeout", type=float, default=30.0,
                      help="seconds to reach a node and retry 'unavailable' (default 30)")
    _add_client_arguments(send)
    send.set_defaults(func=_cmd_send)

    listen = sub.add_parser("listen", help="print every message the token may see, once each",
                            description="Print every envelope of your department, All and your direct messages "
                                        "as it arrives, one JSON line each (or --format text), exactly once and "
                                        "in order per topic, across reconnects and node restarts. With --state "
                                        "a restarted listen resumes where it stopped and prints what it missed.")
    listen.add_argument("--state", metavar="FILE", help="keep the position in FILE and resume from it")
    listen.add_argument("--history", type=int, default=0, metavar="N",
                        help="on a first start (no state yet), first print the newest N envelopes")
    listen.add_argument("--format", choices=("json", "text"), default="json",
                        help="json: the envelope as the node sent it (default); text: a readable line")
    _add_client_arguments(listen)
    listen.set_defaults(func=_cmd_listen)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from components.client.state import StateError
    try:
        return args.func(args)
    except (ConfigError, ValueError) as e:
        print(f"deptcast: {e}", file=sys.stderr)
        return 2
    except StateError as e:
        print(f"deptcast {args.command}: state file {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
