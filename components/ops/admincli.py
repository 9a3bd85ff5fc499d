"""The operators' commands: ``deptcast roster import|list|remove`` and ``deptcast revoke``, on
the node's procedures, with an ``admin`` token: given (``--token-file``, ``--token`` or
``DEPTCAST_TOKEN``), or minted from the node directory's secret (``--node-dir``, or
``DEPTCAST_JWT_SECRET``), as ``deptcast token`` mints one.

    deptcast roster import FILE.csv [--node-dir DIR | --token-file PATH] [--url URL ...]
    deptcast roster list DEPT [--json]
    deptcast roster remove DEPT_USER
    deptcast revoke DEPT_USER
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

from components.client.contract import ADMIN, PROC_ADMIN_REVOKE, PROC_ROSTER
from components.client.errors import DeptcastError
from components.core import names
from components.core.settings import ConfigError, read_secret
from components.ops.clientargs import (TokenSource, add_node_arguments, given_token, minted, node_urls, printable,
                                       run_calls)
from components.ops.clientcli import report_problems
from components.ops.rosterfile import MAX_FILE_BYTES, read_roster

#: the identity of the admin tokens the commands mint (operators act as this user)
ADMIN_USER = "operator"
ADMIN_DEPT = "ops"
#: the lifetime of a minted admin token (a new one is minted at each sign-in and renewal)
ADMIN_TTL = 300
#: the most rows one deptcast.admin.roster_import call takes
IMPORT_CHUNK = 1000


def admin_token(args: argparse.Namespace, env: Dict[str, str]) -> TokenSource:
    """The given token, else an ``admin`` token minted with the node directory's secret.

    :raises ValueError: if there is none
    """
    token = given_token(args, env)
    if token is not None:
        return token
    try:
        secret = read_secret(Path(args.cbdir), env, create=False)
    except ConfigError as e:
        raise ValueError(f"no admin token: give --token-file PATH or DEPTCAST_TOKEN, or mint one with the node's "
                         f"secret ({e})") from None
    return minted(secret, ADMIN_USER, ADMIN_DEPT, ADMIN, ADMIN_TTL)


def user_key(value: str) -> str:
    """``value`` if it is a user key ``<dept>_<user>``.

    :raises ValueError: if it is not
    """
    if names.parse_user_key(value) is None:
        raise ValueError(f"{printable(value[:80])!r} is not a user key <dept>_<user> ({names.NAME_RULE})")
    return value


def _run(args: argparse.Namespace, command: str, body: Callable[[Any], Any]) -> int:
    env = dict(os.environ)
    return run_calls(command, node_urls(args, env), admin_token(args, env), args.verbose, body)


def _protocol(what: str) -> DeptcastError:
    return DeptcastError(f"{what} answered something else than the contract says", uri="deptcast.client.protocol")


# -- revoke


def _cmd_revoke(args: argparse.Namespace) -> int:
    key = user_key(args.user_key)

    async def body(client: Any) -> int:
        await client.engine.call(PROC_ADMIN_REVOKE, key)
        print(f"revoked {key}: its sessions end now on every node, and its tokens issued until now are refused")
        return 0
    return _run(args, "revoke", body)


# -- roster


def _cmd_roster_import(args: argparse.Namespace) -> int:
    try:
        with open(args.file, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise ValueError(f"cannot read {args.file} ({e.strerror})") from None
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"{args.file} is larger than {MAX_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{args.file} is not UTF-8 text") from None
    rows, problems = read_roster(text)
    if problems:
        report_problems(args.file, problems)
        raise ValueError(f"{args.file}: {len(problems)} bad lines; nothing was imported")
    if not rows:
        raise ValueError(f"{args.file} holds nobody")

    async def body(client: Any) -> int:
        return await import_rows(client, rows)
    return _run(args, "roster import", body)


async def import_rows(client: Any, rows: List[Tuple[str, str]], chunk: int = IMPORT_CHUNK) -> int:
    """Add ``rows`` to the roster in calls of ``chunk``; progress on stderr for more than one,
    a summary on stdout.

    :returns: the exit status
    """
    added = known = 0
    for start in range(0, len(rows), chunk):
        part = rows[start:start + chunk]
        answer = await client.engine.call(names.PROC_ADMIN_ROSTER_IMPORT, [list(row) for row in part])
        if not isinstance(answer, dict) or not all(isinstance(answer.get(k), int) for k in ("added", "known")):
            raise _protocol(names.PROC_ADMIN_ROSTER_IMPORT)
        added += answer["added"]
        known += answer["known"]
        if len(rows) > chunk:
            print(f"deptcast roster import: {start + len(part)} of {len(rows)} done", file=sys.stderr, flush=True)
    print(f"{len(rows)} people: {added} added to the roster, {known} on it already")
    return 0


def format_roster(roster: Dict[str, Any]) -> str:
    """``deptcast roster list`` as people read it.

    :rtype: str
    """
    users = roster.get("users") or []
    lines = [f"{roster.get('dept')}: {len(users)} on the roster"]
    for entry in users:
        lines.append(f"  {str(entry.get('user')):<30} {str(entry.get('source')):<10} "
                     f"first seen {_day(entry.get('first_seen'))}, last seen {_day(entry.get('last_seen'))}")
    return "\n".join(printable(line) for line in lines)


def _day(value: Any) -> str:
    """A roster time (ms since the epoch) as a local date and time, or ``-``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(value / 1000))


def _cmd_roster_list(args: argparse.Namespace) -> int:
    if not names.is_name(args.dept) or args.dept == names.ALL:
        raise ValueError(f"{printable(args.dept[:80])!r} is not a department code ({names.NAME_RULE})")

    async def body(client: Any) -> int:
        roster = await client.engine.call(PROC_ROSTER, args.dept)
        if not isinstance(roster, dict) or not isinstance(roster.get("users"), list):
            raise _protocol(PROC_ROSTER)
        print(json.dumps(roster, ensure_ascii=False) if args.json else format_roster(roster))
        return 0
    return _run(args, "roster list", body)


def _cmd_roster_remove(args: argparse.Namespace) -> int:
    key = user_key(args.user_key)

    async def body(client: Any) -> int:
        answer = await client.engine.call(names.PROC_ADMIN_ROSTER_REMOVE, key)
        if not isinstance(answer, dict) or not isinstance(answer.get("removed"), bool):
            raise _protocol(names.PROC_ADMIN_ROSTER_REMOVE)
        print(f"removed {key} from the roster" if answer["removed"] else f"{key} was not on the roster")
        return 0
    return _run(args, "roster remove", body)


def add_cli(sub: "argparse._SubParsersAction") -> None:
    """Add ``deptcast roster`` and ``deptcast revoke`` to the command line."""
    token_help = ("An admin token: --token-file PATH, --token or DEPTCAST_TOKEN; else one is minted with the node "
                  "directory's secret (--node-dir, or DEPTCAST_JWT_SECRET).")
    revoke = sub.add_parser("revoke", help="end a user's sessions and refuse its tokens (admin)",
                            description="Revoke user DEPT_USER on every node: its WAMP sessions end "
                                        "(deptcast.close.revoked), its legacy sockets close (4003), and its tokens "
                                        "issued until now are refused. " + token_help)
    revoke.add_argument("user_key", metavar="DEPT_USER", help="the user, as <dept>_<user>")
    add_node_arguments(revoke, mint=False)
    revoke.set_defaults(func=_cmd_revoke)

    roster = sub.add_parser("roster", help="the departments' known members: import, list, remove (admin)",
                            description="The roster: who is in each department's audience for receipts. "
                                        + token_help)
    verbs = roster.add_subparsers(dest="verb", required=True)
    imp = verbs.add_parser("import", help="add the people of a CSV file (dept,user)",
                           description="Add everyone in FILE.csv (columns dept,user; a header row is optional) to "
                                       "the roster. Every line is checked first; bad lines are listed with their "
                                       "numbers and nothing is imported. " + token_help)
    imp.add_argument("file", metavar="FILE.csv")
    add_node_arguments(imp, mint=False)
    imp.set_defaults(func=_cmd_roster_import)
    lst = verbs.add_parser("list", help="the known members of a department",
                           description="List the roster of DEPT: who, how they came (signed in, imported), first "
                                       "and last seen. " + token_help)
    lst.add_argument("dept", metavar="DEPT")
    lst.add_argument("--json", action="store_true", help="the node's answer as JSON")
    add_node_arguments(lst, mint=False)
    lst.set_defaults(func=_cmd_roster_list)
    rem = verbs.add_parser("remove", help="take a person off the roster",
                           description="Remove DEPT_USER from the roster. " + token_help)
    rem.add_argument("user_key", metavar="DEPT_USER", help="the user, as <dept>_<user>")
    add_node_arguments(rem, mint=False)
    rem.set_defaults(func=_cmd_roster_remove)
