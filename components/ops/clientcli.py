"""``deptcast send``, ``deptcast listen`` and ``deptcast receipts``: the Python client
(:mod:`components.client`) on the command line, on the Twisted reactor.

    deptcast send --to TO MESSAGE [--key KEY] [--url URL ...] [--token-file PATH | --user U --dept D ...]
    deptcast send --batch FILE.jsonl [...]
    deptcast listen [--state FILE] [--history N] [--format json|text] [--url URL ...] [--token-file PATH | ...]
    deptcast receipts ID [--json] [...]
"""

import argparse
import json
import os
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

from components.client import contract
from components.client.calls import check_key
from components.client.errors import DeptcastError, InvalidFrame
from components.client.state import FileState
from components.ops.batchfile import read_batch
from components.ops.clientargs import (EXIT_REFUSED, add_node_arguments, node_urls, printable, quiet_logs, refused,
                                       run_calls, run_reactor, token_source)

#: how many bad lines of an input file are listed (the rest are counted)
SHOWN_PROBLEMS = 20


def format_envelope(envelope: Dict[str, Any], style: str) -> str:
    """One output line for an envelope: the JSON as the node sent it, or a readable line.

    :rtype: str
    """
    if style == "json":
        return json.dumps(envelope, ensure_ascii=False)
    ts = envelope.get("ts")
    to = "All" if envelope.get("scope") == "all" else (
        f"you ({envelope.get('target')})" if envelope.get("scope") == "user" else str(envelope.get("target")))
    sender = f"{envelope.get('sender')}@{envelope.get('sender_dept')}"
    return printable(f"{_when(ts)}  {sender} -> {to}: {envelope.get('message')}")


def _when(ms: Any) -> str:
    """A time in ms since the epoch, as local time (``?`` if it is not one)."""
    if isinstance(ms, bool) or not isinstance(ms, int):
        return "?"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))


def report_problems(path: str, problems: List[Tuple[int, str]]) -> None:
    """Say the bad lines of an input file on stderr, the first :data:`SHOWN_PROBLEMS` of them."""
    for number, problem in problems[:SHOWN_PROBLEMS]:
        print(printable(f"{path}:{number}: {problem}"), file=sys.stderr)
    if len(problems) > SHOWN_PROBLEMS:
        print(f"{path}: ... and {len(problems) - SHOWN_PROBLEMS} more bad lines", file=sys.stderr)


# -- send


def _cmd_send(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    if args.timeout <= 0:
        raise ValueError("--timeout must be a positive number of seconds")
    if not 1 <= args.batch_size <= contract.SEND_BATCH_MAX:
        raise ValueError(f"--batch-size must be a whole number from 1 to {contract.SEND_BATCH_MAX}")
    if args.batch is not None:
        if args.to is not None or args.message is not None or args.key is not None:
            raise ValueError("--batch sends the notices of its file: give it without --to, --key and MESSAGE")
        return _send_batch(args, env)
    if args.to is None or args.message is None:
        raise ValueError("give --to TO and MESSAGE (or --batch FILE.jsonl)")
    key = None
    if args.key is not None:
        try:
            key = check_key(args.key)
        except InvalidFrame as e:
            raise ValueError(f"--key: {e.reason}") from None
    urls, token = node_urls(args, env), token_source(args, env)

    async def body(client: Any) -> int:
        envelope = await client.send(args.to, args.message, timeout=args.timeout, key=key)
        print(json.dumps(envelope, ensure_ascii=False))
        return 0
    return run_calls("send", urls, token, args.verbose, body)


def _send_batch(args: argparse.Namespace, env: Dict[str, str]) -> int:
    try:
        with open(args.batch, "rb") as f:
            items, problems = read_batch(f)
    except OSError as e:
        raise ValueError(f"cannot read {args.batch} ({e.strerror})") from None
    if problems:
        report_problems(args.batch, problems)
        raise ValueError(f"{args.batch}: {len(problems)} bad lines; nothing was sent")
    if not items:
        raise ValueError(f"{args.batch} holds no notices")
    urls, token = node_urls(args, env), token_source(args, env)

    async def body(client: Any) -> int:
        return await send_items(client, args.batch, items, args.batch_size, args.timeout)
    return run_calls("send", urls, token, args.verbose, body)


async def send_items(client: Any, path: str, items: List[Tuple[int, Dict[str, Any]]], chunk: int,
                     timeout: float) -> int:
    """Send the numbered notices of file ``path`` in batches of ``chunk``: each refused item on
    stderr with its line, progress on stderr for more than one batch, a summary on stdout.
    A batch refused as a whole stops there (the summary says which lines were not sent).

    :returns: the exit status: 1 if anything was refused or not sent
    """
    sent = refused = 0
    for start in range(0, len(items), chunk):
        part = items[start:start + chunk]
        try:
            results = await client.send_batch([item for _, item in part], timeout=timeout)
        except DeptcastError as e:
            print(f"deptcast send: {printable(str(e))}", file=sys.stderr)
            print(f"{len(items)} notices: {sent} sent, {refused} refused; lines {part[0][0]} to {items[-1][0]} "
                  f"were not sent")
            return EXIT_REFUSED
        for (number, _), result in zip(part, results):
            if isinstance(result, dict) and "error" in result and "id" not in result:
                refused += 1
                print(printable(f"{path}:{number}: {result.get('error')}: {result.get('detail', '')}"),
                      file=sys.stderr)
            else:
                sent += 1
        if len(items) > chunk:
            print(f"deptcast send: {start + len(part)} of {len(items)} done", file=sys.stderr, flush=True)
    print(f"{len(items)} notices: {sent} sent, {refused} refused")
    return EXIT_REFUSED if refused else 0


# -- listen


def _cmd_listen(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    urls = node_urls(args, env)
    token = token_source(args, env)
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
    quiet_logs(args.verbose)
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
            return refused("listen", e, token)
        return 0
    try:
        return run_reactor(main)
    finally:
        if state is not None:
            state.unlock()


# -- receipts


async def read_receipts(client: Any, envelope_id: str, page: int = 200) -> Dict[str, Any]:
    """The counts of a notice and every page of who is in each state:
    ``{"receipts": counts, "seen": [...], "delivered": [...], "pending": [...]}``.

    :rtype: dict
    """
    out: Dict[str, Any] = {"receipts": await client.receipts(envelope_id)}
    for state in contract.RECIPIENT_STATES:
        users: List[Dict[str, Any]] = []
        after: Optional[str] = None
        cursors = set()
        while True:
            answer = await client.recipients(envelope_id, state, after=after, limit=page)
            if not isinstance(answer, dict) or not isinstance(answer.get("users"), list):
                raise DeptcastError("deptcast.recipients did not answer {users, next}", uri="deptcast.client.protocol")
            users += answer["users"]
            after = answer.get("next")
            if after is None or after in cursors:
                break
            cursors.add(after)
        out[state] = users
    return out


def format_receipts(report: Dict[str, Any]) -> str:
    """``deptcast receipts`` as people read it.

    :rtype: str
    """
    counts = report["receipts"]
    lines = [f"notice {counts.get('id')}: {counts.get('audience')} in its audience; seen by {counts.get('seen')}, "
             f"delivered to {counts.get('delivered')} more who have not seen it, {counts.get('pending')} have neither"]
    titles = {contract.SEEN: "seen (when)", contract.DELIVERED: "delivered, not seen yet (when)",
              contract.PENDING: "neither delivered nor seen"}
    for state in contract.RECIPIENT_STATES:
        users = report[state]
        lines.append(f"{titles[state]}: {len(users)}")
        for entry in users:
            who = f"{entry.get('dept')}_{entry.get('user')}"
            at = entry.get("at")
            lines.append(f"  {who:<40} {_when(at)}" if at is not None else f"  {who}")
    return "\n".join(printable(line) for line in lines)


def _cmd_receipts(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    urls, token = node_urls(args, env), token_source(args, env)

    async def body(client: Any) -> int:
        report = await read_receipts(client, args.id)
        if args.json:
            print(json.dumps(report, ensure_ascii=False))
        else:
            print(format_receipts(report))
        return 0
    return run_calls("receipts", urls, token, args.verbose, body)


def add_cli(sub: "argparse._SubParsersAction") -> None:
    """Add ``deptcast send``, ``deptcast listen`` and ``deptcast receipts`` to the command line."""
    send = sub.add_parser("send", help="send a notice (or a file of them) and print the stored envelope",
                          description="Send MESSAGE to a department, a user (<dept>_<user>) or All. Prints the "
                                      "envelope as JSON and exits 0; a refusal prints its error URI and reason "
                                      "and exits 1. The notice carries one idempotency key (--key, or a new one) "
                                      "on every retry: 'unavailable', 'rate_limited' and a lost connection are "
                                      "retried until --timeout without ever storing it twice. With --batch, "
                                      "sends every line of a JSON-lines file ({\"to\", \"message\", \"key\"?} each) "
                                      "in batches of up to 1,000; bad lines are listed before anything is sent.")
    send.add_argument("--to", help="a department code, All, or a user key <dept>_<user>")
    send.add_argument("message", nargs="?", help="the message text")
    send.add_argument("--key", help="the notice's idempotency key (1-64 letters, digits, '-', '_', '.'): the same "
                                    "key sends the same notice at most once, within a day")
    send.add_argument("--batch", metavar="FILE.jsonl", help="send the notices of this JSON-lines file")
    send.add_argument("--batch-size", type=int, default=contract.SEND_BATCH_MAX, metavar="N",
                      help=f"notices per call with --batch (1 to {contract.SEND_BATCH_MAX}, the default)")
    send.add_argument("--timeout", type=float, default=30.0,
                      help="seconds to reach a node and retry (default 30; per batch with --batch)")
    add_node_arguments(send)
    send.set_defaults(func=_cmd_send)

    listen = sub.add_parser("listen", help="print every message the token may see, once each",
                            description="Print every envelope of your department, All and your direct messages "
                                        "as it arrives, one JSON line each (or --format text), exactly once and "
                                        "in order per topic, across reconnects and node restarts. With --state "
                                        "a restarted listen resumes where it stopped and prints what it missed. "
                                        "With --token-file (or --user and --dept) the token is renewed before it "
                                        "expires, on the open connection; a token given as it is ends the "
                                        "listen when it expires.")
    listen.add_argument("--state", metavar="FILE", help="keep the position in FILE and resume from it")
    listen.add_argument("--history", type=int, default=0, metavar="N",
                        help="on a first start (no state yet), first print the newest N envelopes")
    listen.add_argument("--format", choices=("json", "text"), default="json",
                        help="json: the envelope as the node sent it (default); text: a readable line")
    add_node_arguments(listen)
    listen.set_defaults(func=_cmd_listen)

    receipts = sub.add_parser("receipts", help="who has seen a notice you sent, and who has not",
                              description="Print the receipt counts of a notice you sent (its id), who saw it "
                                          "and when, who has it but has not seen it, and who has neither.")
    receipts.add_argument("id", help="the notice's id (the envelope's 'id')")
    receipts.add_argument("--json", action="store_true", help="one JSON object: the counts and the three lists")
    add_node_arguments(receipts)
    receipts.set_defaults(func=_cmd_receipts)
