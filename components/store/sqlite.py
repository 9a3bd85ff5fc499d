"""The SQLite store: the embedded default, one file under the node directory, WAL mode."""

import sqlite3
from pathlib import Path
from typing import Any, Dict, List

from components.messages import Target, make_envelope
from components.store import format_id
from components.store._rows import history_query, row_to_envelope
from components.tokens import Identity

#: schema migrations, applied in order; the index + 1 is the schema version
MIGRATIONS = [
    """
    CREATE TABLE messages (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        scope       TEXT NOT NULL,
        target      TEXT NOT NULL,
        target_dept TEXT,
        target_user TEXT,
        sender      TEXT NOT NULL,
        sender_dept TEXT NOT NULL,
        message     TEXT NOT NULL,
        ts          INTEGER NOT NULL
    );
    CREATE INDEX messages_dept ON messages (target_dept, id) WHERE scope = 'dept';
    CREATE INDEX messages_user ON messages (target_user, id) WHERE scope = 'user';
    CREATE INDEX messages_all ON messages (id) WHERE scope = 'all';
    """,
    # per-topic sequence numbers: a subscriber that sees seq jump knows it missed a message
    """
    ALTER TABLE messages ADD COLUMN seq INTEGER;
    CREATE TABLE topic_seq (
        topic TEXT PRIMARY KEY,
        seq   INTEGER NOT NULL
    );
    """,
]

_HISTORY = {latest: history_query("?", latest) for latest in (False, True)}


class SqliteStore:
    """The store on one SQLite file; used from one thread at a time."""

    def __init__(self, path: str) -> None:
        self.path = path
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")

    def migrate(self) -> int:
        db = self._db
        db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = db.execute("SELECT max(version) FROM schema_version").fetchone()
        version = row[0] or 0
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            db.execute("BEGIN IMMEDIATE")
            try:
                for statement in filter(str.strip, script.split(";")):
                    db.execute(statement)
                db.execute("INSERT INTO schema_version (version) VALUES (?)", (number,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            version = number
        return version

    def append(self, target: Target, sender: Identity, message: str, ts: int) -> Dict[str, Any]:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            seq = db.execute(
                "INSERT INTO topic_seq (topic, seq) VALUES (?, 1)"
                " ON CONFLICT (topic) DO UPDATE SET seq = seq + 1 RETURNING seq", (target.topic,)).fetchone()[0]
            cur = db.execute(
                "INSERT INTO messages (scope, target, target_dept, target_user, sender, sender_dept, message, ts, seq)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (target.scope, target.target, target.dept, target.user, sender.user, sender.dept, message, ts, seq))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return make_envelope(format_id(cur.lastrowid), target, sender, message, ts, seq=seq)

    def history(self, reader: Identity, after: int, limit: int, latest: bool = False) -> List[Dict[str, Any]]:
        rows = self._db.execute(_HISTORY[latest], (after, reader.dept, reader.user, limit)).fetchall()
        return [row_to_envelope(r) for r in rows]

    def close(self) -> None:
        self._db.close()
