"""The message store: one narrow interface, an SQLite and a PostgreSQL implementation.

A store is synchronous and owned by one thread at a time; :class:`ThreadedStore`
runs it off the reactor thread and gives Deferreds to the WAMP components.
"""

from typing import Any, Dict, List, Optional, Protocol

from twisted.internet import defer, threads
from twisted.python.threadpool import ThreadPool

from components.errors import INVALID_FRAME, Refused
from components.messages import Target
from components.tokens import Identity

#: width of a message id: zero-padded decimal, so ids sort as strings in send order
ID_WIDTH = 16


def format_id(n: int) -> str:
    return f"{n:0{ID_WIDTH}d}"


def parse_after(after: object) -> int:
    """Read the ``after`` argument of ``deptcast.history``: ``None`` or a message id.

    :raises Refused: ``invalid_frame`` if it is neither
    :rtype: int
    """
    if after is None or after == "":
        return 0
    if isinstance(after, str) and after.isdigit() and len(after) <= ID_WIDTH:
        return int(after)
    raise Refused(INVALID_FRAME, "'after' must be a message id as returned in an envelope's 'id'")


class Store(Protocol):
    """What deptcast needs from storage, and nothing more."""

    def migrate(self) -> int:
        """Create or upgrade the schema; return the schema version now in force."""

    def append(self, target: Target, sender: Identity, message: str, ts: int) -> Dict[str, Any]:
        """Store one message and return its envelope, with a fresh id and the next ``seq``
        of its topic (1, 2, 3, ... per topic, taken in the same transaction)."""

    def history(self, reader: Identity, after: int, limit: int, latest: bool = False) -> List[Dict[str, Any]]:
        """The envelopes ``reader`` may see (own department, All, own direct messages)
        with id above ``after``, oldest first, at most ``limit``: the oldest such, or with
        ``latest`` the newest."""

    def close(self) -> None:
        """Release connections."""


def open_store(db: str) -> Store:
    """The store that ``db`` names: a ``postgresql://`` URL or an SQLite file path.

    :rtype: Store
    """
    if db.startswith(("postgresql://", "postgres://")):
        from components.store.postgres import PostgresStore
        return PostgresStore(db)
    from components.store.sqlite import SqliteStore
    return SqliteStore(db)


class ThreadedStore:
    """Runs a synchronous store in its own thread pool, off the reactor thread.

    :param threads_: how many threads may use the store at once (1 for SQLite)
    """

    def __init__(self, store: Store, reactor: Any, threads_: int = 1) -> None:
        self.store = store
        self._reactor = reactor
        self._pool = ThreadPool(minthreads=1, maxthreads=threads_, name="deptcast-store")
        self._pool.start()

    def _run(self, fn, *args) -> defer.Deferred:
        return threads.deferToThreadPool(self._reactor, self._pool, fn, *args)

    def migrate(self) -> defer.Deferred:
        return self._run(self.store.migrate)

    def append(self, target: Target, sender: Identity, message: str, ts: int) -> defer.Deferred:
        return self._run(self.store.append, target, sender, message, ts)

    def history(self, reader: Identity, after: int, limit: int, latest: bool = False) -> defer.Deferred:
        return self._run(self.store.history, reader, after, limit, latest)

    @defer.inlineCallbacks
    def close(self):
        try:
            yield self._run(self.store.close)
        finally:
            self._pool.stop()
