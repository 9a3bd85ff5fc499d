"""The message store: one narrow interface, an SQLite and a PostgreSQL implementation.

A store is synchronous and owned by one thread at a time;
:class:`~components.store.threaded.ThreadedStore` runs it off the reactor thread and gives
Deferreds to the adapters.
"""

from typing import Any, Dict, List, Protocol

from components.core.settings import is_postgres_url
from components.core.targets import Target
from components.core.tokens import Identity


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
    if is_postgres_url(db):
        from components.store.postgres import PostgresStore
        return PostgresStore(db)
    from components.store.sqlite import SqliteStore
    return SqliteStore(db)
