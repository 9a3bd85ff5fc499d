"""The store on both implementations for a test: SQLite in a temporary file, PostgreSQL in a
schema of its own on the machine's server (dropped afterwards)."""

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from components.core.retention import PrunedHistory
from components.store import open_store
from tests.support.pg import pg_schema

#: the implementations a store test runs against (its fixtures' params)
BACKENDS = ("sqlite", "postgres")


@contextmanager
def store_location(backend: str, tmp_path: Path, prefix: str) -> Iterator[str]:
    """A database no other test uses: a file path under ``tmp_path`` for ``"sqlite"``, the URL
    of a fresh schema named from ``prefix`` for ``"postgres"``.

    :rtype: Iterator[str]
    """
    if backend == "sqlite":
        yield str(tmp_path / "store.sqlite3")
    else:
        with pg_schema(prefix) as url:
            yield url


@contextmanager
def migrated_store(location: str) -> Iterator[Any]:
    """The store at ``location``, migrated, closed afterwards.

    :rtype: Iterator[Store]
    """
    store = open_store(location)
    try:
        store.migrate()
        yield store
    finally:
        store.close()


def history_or_pruned(store: Any, request: Any) -> Any:
    """``store.history(request)``, or ``("pruned", gone)`` where retention removed what it asks
    for: one comparable answer either way."""
    try:
        return store.history(request)
    except PrunedHistory as e:
        return ("pruned", e.gone)
