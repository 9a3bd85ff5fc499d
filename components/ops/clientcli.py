"""``deptcast send`` and ``deptcast listen``: the Python client (:mod:`components.client`) on the
command line, on the Twisted reactor.

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

from components.client.connector import DEFAULT_URL, parse_urls
from components.client.errors import DeptcastError
from components.client.state import FileState, StateError
from components.core.names import CLIENT_ROLES
from components.core.settings import DEFAULT_NODE_DIR, read_secret
from components.core.tokens import issue_token

#: exit status of a refusal or an unreachable node (bad input: 2, as argparse)
EXIT_REFUSED = 1
#: the longest token accepted on the command line or in DEPTCAST_TOKEN
MAX_TOKEN_CHARS = 8192


def node_urls(args: argparse.Namespace, env: Dict[str, str]) -> List[str]:
    """``--url`` (repeatable, comma-separated), else ``DEPTCAST_URL``, else the local node.

    :raises ValueError: for a malformed URL
    :rtype: list
    """
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
    if isinstance(e, DeptcastError):
        return _printable(str(e))
    if isinstance(e, StateError):
        return _printable(f"state file {e}")
    return None


def _run_reactor(main: Callable[[Any], Any]) -> int:
    """Run ``main(reactor)`` (a Deferred of an exit status) on the Twisted reactor."""
    # here, not at the top: importing the reactor installs it, and only send and listen run one
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
    # here, not at the top: Twisted is for the commands that run a client, not for every command
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
    from components.client.tx import Client  # here: importing it chooses Twisted for txaio in this process
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
    from components.client.tx import Client  # here: importing it chooses Twisted for txaio in this process
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


def add_cli(sub: "argparse._SubParsersAction") -> None:
    """Add ``deptcast send`` and ``deptcast listen`` to the command line."""
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
