"""The PostgreSQL store: one database shared by every node of a cluster.

The schema is created and migrated on start; several nodes starting at once take a
transaction-level advisory lock, so exactly one of them applies each migration.

Each thread of the :class:`~components.store.threaded.ThreadedStore` pool gets its own
connection (a psycopg connection must not run two queries at once).
"""

import threading
from contextlib import contextmanager
from typing import Any, Iterator, List

import psycopg

from components.store.sql import POSTGRES, SqlStore

#: advisory lock namespaces (the second key is the schema's hash): migrations, and appends
_MIGRATION_LOCK = 0x64637374  # "dcst"
_APPEND_LOCK = 0x64637361  # "dcsa"


class PostgresStore(SqlStore):
    """The store on a PostgreSQL database, named by a ``postgresql://`` URL.

    The schema is the connection's ``search_path`` (e.g. ``?options=-c%20search_path%3Ddeptcast``
    in the URL); by default ``public``.

    :param url: the connection URL (it may hold a password: never log it)
    """

    dialect = POSTGRES

    def __init__(self, url: str) -> None:
        super().__init__()
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

    @contextmanager
    def _write(self) -> Iterator[Any]:
        conn = self._conn()
        with conn.transaction():
            yield conn

    def _migration_lock(self, conn: Any) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))", (_MIGRATION_LOCK,))

    def _append_lock(self, conn: Any) -> None:
        # ids come from a sequence when the row is inserted, but transactions commit in their
        # own order: one append at a time per schema makes id order the commit order, so a
        # reader that has seen an id has seen every smaller one (history after=<id> skips nothing)
        conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))", (_APPEND_LOCK,))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()
