"""What both SQL stores share: the history query and the row-to-envelope mapping.

The query is written once with ``{p}`` for the driver's placeholder (``?`` for sqlite3,
``%s`` for psycopg); its plain SQL runs unchanged on SQLite and PostgreSQL.
"""

from typing import Any, Dict

from components.messages import Target, make_envelope
from components.store import format_id
from components.tokens import Identity

COLUMNS = "id, scope, target, target_dept, target_user, sender, sender_dept, message, ts, seq"

_VISIBLE = ("id > {p} AND ((scope = 'dept' AND target_dept = {p}) OR scope = 'all'"
            " OR (scope = 'user' AND target_user = {p}))")


def history_query(placeholder: str, latest: bool) -> str:
    """The history query: what a reader may see after an id, oldest first.

    :param latest: the newest rows (still returned oldest first) rather than the oldest
    :rtype: str
    """
    where = _VISIBLE.format(p=placeholder)
    if latest:
        return (f"SELECT {COLUMNS} FROM (SELECT {COLUMNS} FROM messages WHERE {where}"
                f" ORDER BY id DESC LIMIT {placeholder}) AS recent ORDER BY id")
    return f"SELECT {COLUMNS} FROM messages WHERE {where} ORDER BY id LIMIT {placeholder}"


def row_to_envelope(row) -> Dict[str, Any]:
    msg_id, scope, target, dept, user, sender, sender_dept, message, ts, seq = row
    extra = {"seq": seq} if seq is not None else {}
    return make_envelope(format_id(msg_id), Target(scope, target, dept, user),
                         Identity(sender, sender_dept), message, ts, **extra)
