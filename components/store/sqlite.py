"""The SQLite store: the embedded default, one file under the node directory, WAL mode."""

import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from components.store.sql import SQLITE, SqlStore


class SqliteStore(SqlStore):
    """The store on one SQLite file; used from one thread at a time."""

    dialect = SQLITE

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")

    def _conn(self) -> sqlite3.Connection:
        return self._db

    @contextmanager
    def _write(self) -> Iterator[Any]:
        db = self._db
        # IMMEDIATE: take the write lock at the start, so two writers never deadlock mid-way
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()
