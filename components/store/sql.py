"""The SQL both stores run, written once: schema migrations, ``append`` and the history query.

The statements are plain SQL that SQLite and PostgreSQL both accept; the few differences
(the driver's placeholder, the id column's type, how a migration is locked) are a
:class:`Dialect`. :class:`SqlStore` implements the :class:`~components.store.Store`
interface on a DB-API connection; the back ends only say how to connect and how to lock.
"""

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List

from components.core.history import format_id
from components.core.messages import make_envelope
from components.core.targets import Target
from components.core.tokens import Identity


@dataclass(frozen=True)
class Dialect:
    """What differs between the SQL of the back ends.

    :ivar placeholder: the driver's parameter marker (``?`` or ``%s``)
    :ivar serial: the type of an auto-numbered primary key
    :ivar bigint: the type of a 64-bit integer column
    """

    placeholder: str
    serial: str
    bigint: str


SQLITE = Dialect(placeholder="?", serial="INTEGER PRIMARY KEY AUTOINCREMENT", bigint="INTEGER")
POSTGRES = Dialect(placeholder="%s", serial="BIGSERIAL PRIMARY KEY", bigint="BIGINT")


def migrations(d: Dialect) -> List[str]:
    """The schema migrations in order; the index + 1 is the schema version.

    :rtype: list
    """
    return [
        f"""
        CREATE TABLE messages (
            id          {d.serial},
            scope       TEXT NOT NULL,
            target      TEXT NOT NULL,
            target_dept TEXT,
            target_user TEXT,
            sender      TEXT NOT NULL,
            sender_dept TEXT NOT NULL,
            message     TEXT NOT NULL,
            ts          {d.bigint} NOT NULL
        );
        CREATE INDEX messages_dept ON messages (target_dept, id) WHERE scope = 'dept';
        CREATE INDEX messages_user ON messages (target_user, id) WHERE scope = 'user';
        CREATE INDEX messages_all ON messages (id) WHERE scope = 'all';
        """,
        # per-topic sequence numbers: a subscriber that sees seq jump knows it missed a message
        f"""
        ALTER TABLE messages ADD COLUMN seq {d.bigint};
        CREATE TABLE topic_seq (
            topic TEXT PRIMARY KEY,
            seq   {d.bigint} NOT NULL
        );
        """,
    ]


def statements(script: str) -> List[str]:
    """The statements of a migration script (split on ``;``)."""
    return [s for s in script.split(";") if s.strip()]


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


class SqlStore:
    """The store on a DB-API connection; subclasses connect and lock.

    Subclasses provide :meth:`_conn` (this thread's connection, autocommit),
    :meth:`_write` (a context manager: one write transaction, committed on exit) and
    :meth:`_migration_lock` (called inside the migration's transaction).
    """

    dialect: Dialect

    def __init__(self) -> None:
        p = self.dialect.placeholder
        self._history_sql = {latest: history_query(p, latest) for latest in (False, True)}
        self._seq_sql = (f"INSERT INTO topic_seq (topic, seq) VALUES ({p}, 1)"
                         " ON CONFLICT (topic) DO UPDATE SET seq = topic_seq.seq + 1 RETURNING seq")
        self._insert_sql = ("INSERT INTO messages (scope, target, target_dept, target_user, sender, sender_dept,"
                            f" message, ts, seq) VALUES ({', '.join([p] * 9)}) RETURNING id")

    # -- what a back end provides

    def _conn(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    @contextmanager
    def _write(self) -> Iterator[Any]:  # pragma: no cover - abstract
        raise NotImplementedError
        yield

    def _migration_lock(self, conn: Any) -> None:
        """Serialise migrations of several processes (nothing to do where the write
        transaction already excludes other writers)."""

    # -- the Store interface

    def migrate(self) -> int:
        p = self.dialect.placeholder
        with self._write() as conn:
            self._migration_lock(conn)
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            version = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]
            scripts = migrations(self.dialect)
            for number, script in enumerate(scripts[version:], start=version + 1):
                for statement in statements(script):
                    conn.execute(statement)
                conn.execute(f"INSERT INTO schema_version (version) VALUES ({p})", (number,))
                version = number
        return version

    def append(self, target: Target, sender: Identity, message: str, ts: int) -> Dict[str, Any]:
        with self._write() as conn:
            # the topic's row stays locked until commit: sends to one topic take their seq and
            # their id in the same order, on every node
            seq = conn.execute(self._seq_sql, (target.topic,)).fetchone()[0]
            msg_id = conn.execute(self._insert_sql, (target.scope, target.target, target.dept, target.user,
                                                     sender.user, sender.dept, message, ts, seq)).fetchone()[0]
        return make_envelope(format_id(msg_id), target, sender, message, ts, seq=seq)

    def history(self, reader: Identity, after: int, limit: int, latest: bool = False) -> List[Dict[str, Any]]:
        rows = self._conn().execute(self._history_sql[latest], (after, reader.dept, reader.user, limit)).fetchall()
        return [row_to_envelope(r) for r in rows]
