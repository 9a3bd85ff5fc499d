"""The PostgreSQL store: one database shared by every node of a cluster.

Message ids come from one sequence, so they are unique and sort in send order across all
nodes. Each topic has its own counter too (``seq`` in the envelope: 1, 2, 3, ... per topic),
so a subscriber can tell that it missed a message and fetch it from history. The schema is created and migrated on start; several nodes starting at once take a
transaction-level advisory lock, so exactly one of them applies each migration.

Each thread of the :class:`~components.store.ThreadedStore` pool gets its own connection
(a psycopg connection must not run two queries at once).
"""

import threading
from typing import Any, Dict, List

import psycopg

from components.messages import Target, make_envelope
from components.store import format_id
from components.store._rows import history_query, row_to_envelope
from components.tokens import Identity

#: schema migrations, applied in order; the index + 1 is the schema version
MIGRATIONS = [
    """
    CREATE TABLE messages (
        id          BIGSERIAL PRIMARY KEY,
        scope       TEXT NOT NULL,
        target      TEXT NOT NULL,
        target_dept TEXT,
        target_user TEXT,
        sender      TEXT NOT NULL,
        sender_dept TEXT NOT NULL,
        message     TEXT NOT NULL,
        ts          BIGINT NOT NULL
    );
    CREATE INDEX messages_dept ON messages (target_dept, id) WHERE scope = 'dept';
    CREATE INDEX messages_user ON messages (target_user, id) WHERE scope = 'user';
    CREATE INDEX messages_all ON messages (id) WHERE scope = 'all';
    """,
    # per-topic sequence numbers: a subscriber that sees seq jump knows it missed a message
    """
    ALTER TABLE messages ADD COLUMN seq BIGINT;
    CREATE TABLE topic_seq (
        topic TEXT PRIMARY KEY,
        seq   BIGINT NOT NULL
    );
    """,
]

_HISTORY = {latest: history_query("%s", latest) for latest in (False, True)}

#: advisory lock namespace for migrations; the second key is the schema's hash
_MIGRATION_LOCK = 0x64637374  # "dcst"


class PostgresStore:
    """The store on a PostgreSQL database, named by a ``postgresql://`` URL.

    The schema is the connection's ``search_path`` (e.g. ``?options=-c%20search_path%3Ddeptcast``
    in the URL); by default ``public``.

    :param url: the connection URL (it may hold a password: never log it)
    """

    def __init__(self, url: str) -> None:
        self._url = url
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: List[psycopg.Connection] = []
        self._closed = False

    def _conn(self) -> psycopg.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            if self._closed:
                raise RuntimeError("the store is closed")
            conn = psycopg.connect(self._url, autocommit=True)
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def migrate(self) -> int:
        conn = self._conn()
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))", (_MIGRATION_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            version = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in filter(str.strip, script.split(";")):
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (number,))
                version = number
        return version

    def append(self, target: Target, sender: Identity, message: str, ts: int) -> Dict[str, Any]:
        conn = self._conn()
        with conn.transaction():
            # the topic's row stays locked until commit: sends to one topic take their seq and
            # their id in the same order, on every node
            seq = conn.execute(
                "INSERT INTO topic_seq (topic, seq) VALUES (%s, 1)"
                " ON CONFLICT (topic) DO UPDATE SET seq = topic_seq.seq + 1 RETURNING seq",
                (target.topic,)).fetchone()[0]
            msg_id = conn.execute(
                "INSERT INTO messages (scope, target, target_dept, target_user, sender, sender_dept, message, ts, seq)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (target.scope, target.target, target.dept, target.user, sender.user, sender.dept, message, ts, seq),
            ).fetchone()[0]
        return make_envelope(format_id(msg_id), target, sender, message, ts, seq=seq)

    def history(self, reader: Identity, after: int, limit: int, latest: bool = False) -> List[Dict[str, Any]]:
        rows = self._conn().execute(_HISTORY[latest], (after, reader.dept, reader.user, limit)).fetchall()
        return [row_to_envelope(r) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()
