"""What every command that talks to a node shares: its options (the node URLs, the token and
where it comes from), running the client on the Twisted reactor, and errors as one line.

Tokens, in this order: ``--token-file PATH`` (read again before every sign-in and every
renewal, so a long ``listen`` runs on whatever another process last wrote there); ``--token``
(a warning says that other local users can read a command line); ``--user`` and ``--dept``
(minted with the node's secret at every sign-in and renewal); ``DEPTCAST_TOKEN``.
"""

import argparse
import os
import stat
import signal
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, List, Optional, Union

from components.client.connector import DEFAULT_URL, parse_urls
from components.client.errors import DeptcastError, TokenExpired
from components.client.state import StateError
from components.core.names import CLIENT_ROLES
from components.core.settings import DEFAULT_NODE_DIR, read_secret
from components.core.tokens import issue_token

#: exit status of a refusal or an unreachable node (bad input: 2, as argparse)
EXIT_REFUSED = 1
#: the longest token accepted on the command line, in a file or in DEPTCAST_TOKEN
MAX_TOKEN_CHARS = 8192
COMMAND_LINE_WARNING = ("warning: --token puts the token on the command line, where other local users can read it "
                        "(ps, /proc); use --token-file PATH or DEPTCAST_TOKEN")

TokenSource = Union[str, Callable[[], str]]


def node_urls(args: argparse.Namespace, env: Dict[str, str]) -> List[str]:
    """``--url`` (repeatable, comma-separated), else ``DEPTCAST_URL``, else the local node.

    :raises ValueError: for a malformed URL
    :rtype: list
    """
    return parse_urls(args.url or [env.get("DEPTCAST_URL") or DEFAULT_URL])


def check_token(token: str, where: str) -> str:
    """``token`` stripped, if it looks like a JWT.

    :raises ValueError: if it is empty, too long or holds spaces
    :rtype: str
    """
    token = token.strip()
    if not token:
        raise ValueError(f"{where} holds no token")
    if len(token) > MAX_TOKEN_CHARS or any(c.isspace() for c in token):
        raise ValueError(f"{where} does not hold a JWT (too long, or it holds spaces)")
    return token


class TokenFile:
    """A token read from ``path`` each time it is asked for (every sign-in and renewal): keep
    it there, and rewrite it (atomically, e.g. write and rename) before it expires. If the file
    cannot be read at a later time, the token read last is used and the reason said once.

    :param warn: says a problem on standard error
    """

    def __init__(self, path: Union[str, Path], warn: Callable[[str], None]) -> None:
        self.path = Path(path)
        self._warn = warn
        self._last: Optional[str] = None
        self._warned = False

    def read(self) -> str:
        """The token in the file now.

        :raises ValueError: if it cannot be read or holds no token
        """
        try:
            with open(self.path, "rb") as f:
                data = f.read(MAX_TOKEN_CHARS + 2)
                mode = os.fstat(f.fileno()).st_mode
        except OSError as e:
            raise ValueError(f"cannot read the token file {self.path} ({e.strerror})") from None
        if mode & (stat.S_IRGRP | stat.S_IROTH) and not self._warned:
            self._warned = True
            self._warn(f"warning: other users may read the token file {self.path} (chmod 600 it)")
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError:
            raise ValueError(f"the token file {self.path} does not hold a JWT") from None
        return check_token(text, f"the token file {self.path}")

    def __call__(self) -> str:
        try:
            token = self.read()
        except ValueError as e:
            if self._last is None:
                raise
            self._warn(f"{e}; going on with the token read before")
            return self._last
        self._last = token
        return token


def _stderr(text: str) -> None:
    print(f"deptcast: {text}", file=sys.stderr, flush=True)


def given_token(args: argparse.Namespace, env: Dict[str, str],
                warn: Callable[[str], None] = _stderr) -> Optional[TokenSource]:
    """The token given by ``--token-file``, ``--token`` or ``DEPTCAST_TOKEN`` (``None``: none).

    :raises ValueError: if both flags are given, or the token is unusable
    """
    if args.token is not None and args.token_file is not None:
        raise ValueError("give --token or --token-file, not both")
    if args.token_file is not None:
        source = TokenFile(args.token_file, warn)
        source()  # a missing or empty file stops here, with its reason
        return source
    if args.token is not None:
        warn(COMMAND_LINE_WARNING)
        return check_token(args.token, "--token")
    if env.get("DEPTCAST_TOKEN", "").strip():
        return check_token(env["DEPTCAST_TOKEN"], "DEPTCAST_TOKEN")
    return None


def minted(secret: str, user: str, dept: str, role: str, ttl: int) -> Callable[[], str]:
    """A token source that mints a new token at every sign-in and renewal.

    :raises ValueError: for a bad name, role or lifetime (checked once, now)
    """
    issue_token(secret, user, dept, role, ttl)

    def mint() -> str:
        return issue_token(secret, user, dept, role, ttl)
    return mint


def token_source(args: argparse.Namespace, env: Dict[str, str], warn: Callable[[str], None] = _stderr) -> TokenSource:
    """The token of ``send``, ``listen`` and ``receipts`` (see the module).

    :raises ValueError: if there is none, or two ways are given
    :raises ConfigError: if a token must be minted and there is no secret
    """
    if (args.user or args.dept) and (args.token is not None or args.token_file is not None):
        raise ValueError("give --token or --token-file, or --user and --dept to mint one; not both")
    if args.user or args.dept:
        if not (args.user and args.dept):
            raise ValueError("--user and --dept go together (they mint a token with the node's secret)")
        return minted(read_secret(Path(args.cbdir), env, create=False), args.user, args.dept, args.role, args.ttl)
    token = given_token(args, env, warn)
    if token is None:
        raise ValueError("no token: give --token-file PATH (or set DEPTCAST_TOKEN), or --user and --dept to mint "
                         "one with the node's secret")
    return token


def printable(text: str) -> str:
    """``text`` with control characters shown as escapes: a message cannot drive the terminal."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)


def client_error(e: BaseException, fixed_token: bool = False) -> Optional[str]:
    """The one line a user sees for an error the client raised (``None``: not one of ours)."""
    if isinstance(e, TokenExpired) and fixed_token:
        return printable(f"{e} (a token given as it is cannot be renewed: use --token-file, rewritten "
                         f"before it expires, or --user and --dept)")
    if isinstance(e, DeptcastError):
        return printable(str(e))
    if isinstance(e, StateError):
        return printable(f"state file {e}")
    return None


def refused(command: str, error: Exception, token: TokenSource) -> int:
    """Say ``error`` as the command's one line on stderr; exit status 1.

    :raises Exception: ``error`` itself, if it is not one of the client's
    """
    message = client_error(error, fixed_token=isinstance(token, str))
    if message is None:
        raise error
    print(f"deptcast {command}: {message}", file=sys.stderr)
    return EXIT_REFUSED


def run_reactor(main: Callable[[Any], Any]) -> int:
    """Run ``main(reactor)`` (a Deferred of an exit status) on the Twisted reactor.

    SIGINT and SIGTERM stop it once, leaving cleanly (the shutdown triggers run); a repeat while it
    stops is ignored. ``timeout`` signals the command and then its process group, a service
    manager may do the same and people press Ctrl-C twice: with Twisted's own handlers the second
    signal raised ``ReactorNotRunning`` (a traceback on stderr) or, once they were gone, killed
    the process.
    """
    # here, not at the top: importing the reactor installs it, and only the commands that talk
    # to a node run one
    from twisted.internet import defer
    from twisted.internet import reactor as installed
    from twisted.internet.error import ReactorNotRunning

    reactor: Any = installed  # the concrete reactor: run(installSignalHandlers=...), callFromThread
    outcome: List[int] = []
    stopping: List[bool] = []

    def stop_once() -> None:
        if stopping:
            return
        stopping.append(True)
        try:
            reactor.stop()
        except ReactorNotRunning:
            pass  # main ended before the reactor ran

    def on_signal(signum: int, frame: Any) -> None:
        if not stopping:
            reactor.callFromThread(stop_once)

    def finish(result: Any) -> None:
        outcome.append(result if isinstance(result, int) else 0)
        stop_once()

    def crashed(failure: Any) -> None:
        print(f"deptcast: {printable(failure.getErrorMessage())}", file=sys.stderr)
        finish(EXIT_REFUSED)

    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, on_signal)
    reactor.callWhenRunning(lambda: defer.ensureDeferred(main(reactor)).addCallbacks(finish, crashed))
    reactor.run(installSignalHandlers=False)
    for number in (signal.SIGINT, signal.SIGTERM):
        # a signal while the interpreter exits would find the default action (Python restores it
        # for a handler of its own): it would kill a process that has already left cleanly
        signal.signal(number, signal.SIG_IGN)
    return outcome[0] if outcome else 0


def quiet_logs(verbose: bool) -> None:
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


def run_calls(command: str, urls: List[str], token: TokenSource, verbose: bool,
              body: Callable[[Any], Awaitable[int]]) -> int:
    """Run ``body(client)`` with a client that only calls (no subscriptions) on the reactor;
    a refusal or an unreachable node is one line on stderr and exit status 1."""
    from components.client.tx import Client  # here: importing it chooses Twisted for txaio in this process
    quiet_logs(verbose)

    async def main(reactor: Any) -> int:
        client = Client(urls, token, listen=False, acknowledge=False)
        client.start().addErrback(lambda f: None)  # its error reaches the calls too
        try:
            return await body(client)
        except Exception as e:
            return refused(command, e, token)
        finally:
            await client.stop()
    return run_reactor(main)


def add_node_arguments(parser: argparse.ArgumentParser, mint: bool = True) -> None:
    """The options of a command that talks to a node: where, with which token."""
    parser.add_argument("--url", action="append", metavar="URL",
                        help="node WebSocket URL; repeat it or separate with commas for a cluster's nodes "
                             "(default: DEPTCAST_URL, else ws://localhost:8080/ws)")
    parser.add_argument("--token-file", metavar="PATH",
                        help="read the JWT from PATH, again before every reconnect and renewal (rewrite the file "
                             "before the token expires to keep a long command running)")
    parser.add_argument("--token", help="the JWT (visible to other local users: prefer --token-file or "
                                        "DEPTCAST_TOKEN)")
    if mint:
        parser.add_argument("--user", help="mint a token for this user with the node's secret (with --dept)")
        parser.add_argument("--dept", help="the minted token's department")
        parser.add_argument("--role", default="member", choices=CLIENT_ROLES, help="the minted token's role")
        parser.add_argument("--ttl", type=int, default=3600, help="the minted token's lifetime in seconds")
    parser.add_argument("--cbdir", "--node-dir", dest="cbdir", default=DEFAULT_NODE_DIR, metavar="DIR",
                        help=f"node directory whose jwt.secret mints tokens when DEPTCAST_JWT_SECRET is unset "
                             f"(default {DEFAULT_NODE_DIR})")
    parser.add_argument("--verbose", "-v", action="store_true", help="log connections and retries to stderr")
