"""The SQLite store: the embedded default, one file under the node directory, WAL mode.

Each thread has its own connection: the :class:`~components.store.threaded.ThreadedStore`
writes on one thread and reads on others, and in WAL mode a reader never waits for the writer.
"""

import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from components.store.sql import SQLITE, SqlStore


class SqliteStore(SqlStore):
    """The store on one SQLite file.

    :param timeout: seconds a statement waits for a lock held by another process (or
        connection) before it fails
    """

    dialect = SQLITE
    #: what SQLite raises when the file is locked by another process, or unreadable
    unavailable_errors = (sqlite3.OperationalError,)

    def __init__(self, path: str, timeout: float = 5.0) -> None:
        super().__init__()
        self.path = path
        # a little under the caller's deadline (ThreadedStore): a statement waiting for another
        # process's lock gives up before its caller is answered "unavailable", so a refused send
        # is never stored late when the lock goes just after the deadline
        self._timeout_ms = max(1, int(timeout * 1000 * 0.8))
        Path(path).parent.mkdir(parents=True, exist_ok=True)

    def migrate(self) -> int:
        self._conn().execute("PRAGMA journal_mode=WAL")  # a property of the file, kept once set
        return super().migrate()

    def ping(self, write: bool) -> None:
        """As :meth:`SqlStore.ping`, but a write probe does not wait for a lock another process
        holds: it fails at once (writes are failing now) and leaves the one writer thread to
        the sends."""
        if not write:
            return super().ping(False)
        db = self._conn()
        db.execute("PRAGMA busy_timeout=0")
        try:
            super().ping(True)
        finally:
            db.execute(f"PRAGMA busy_timeout={self._timeout_ms}")

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(f"PRAGMA busy_timeout={self._timeout_ms}")
        return db

    @contextmanager
    def _write(self) -> Iterator[Any]:
        db = self._conn()
        # IMMEDIATE: take the write lock at the start, so two writers never deadlock mid-way
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
