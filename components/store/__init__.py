"""The message store: one narrow interface, an SQLite and a PostgreSQL implementation.

A store is synchronous and owned by one thread at a time;
:class:`~components.store.threaded.ThreadedStore` runs it off the reactor thread and gives
Deferreds to the adapters.
"""

from typing import Any, Callable, Dict, List, Optional, Protocol, Sequence, Tuple, Type

from components.core.history import HistoryRequest
from components.core.receipts import Notice
from components.core.sendkeys import Outgoing, Stored
from components.core.settings import is_postgres_url
from components.core.targets import Target
from components.core.tokens import Identity
from components.store.sqlite import SqliteStore


class Store(Protocol):
    """What deptcast needs from storage, and nothing more."""

    def migrate(self) -> int:
        """Create or upgrade the schema; return the schema version now in force."""

    def append(self, target: Target, sender: Identity, message: str, ts: int) -> Dict[str, Any]:
        """Store one message and return its envelope, with a fresh id and the next ``seq``
        of its topic (1, 2, 3, ... per topic, taken in the same transaction)."""

    def append_many(self, items: Sequence[Outgoing],
                    before_commit: Optional[Callable[[], bool]] = None) -> List[Stored]:
        """Store ``items`` in one transaction, in order (group commit); one :class:`Stored`
        each. A keyed item whose sender used that key within a day gets the first envelope
        (``fresh`` false), or a conflict for another target or message; nothing is stored for
        it, and the batch goes on. ``before_commit()`` is asked just before the commit:
        ``False`` rolls it all back."""

    def sent_keys(self, sender: Identity, keys: Sequence[str]) -> Dict[str, Tuple[str, Dict[str, Any]]]:
        """What ``sender`` stored under ``keys``: ``{key: (fingerprint, first envelope)}``."""

    def history(self, request: HistoryRequest) -> List[Dict[str, Any]]:
        """The envelopes on the request's topics (a reader's department, All and own direct
        messages), oldest first: those with an id above ``after`` (the oldest such, or with
        ``latest`` the newest), or, with ``positions``, those with a ``seq`` above each
        topic's position; at most ``limit`` of them and about ``max_bytes`` of messages."""

    def history_many(self, requests: Sequence[HistoryRequest]) -> List[Any]:
        """Several history requests read together: per request, what :meth:`history` answers
        for it, or the :class:`~components.core.retention.PrunedHistory` it raises."""

    def heads(self, topics: Sequence[str]) -> Dict[str, int]:
        """The ``seq`` of the newest committed envelope on each of ``topics`` (topics without
        any envelope are left out)."""

    def prune_older(self, cutoff_ts: int, batch: int) -> int:
        """Remove up to ``batch`` of the oldest messages with a ``ts`` below ``cutoff_ts``;
        return how many went."""

    def topics_over(self, keep: int, limit: int = 1000) -> List[Tuple[str, int]]:
        """Topics holding more than ``keep`` messages, each with the seq up to which its
        messages go."""

    def prune_topic(self, topic: str, upto_seq: int, batch: int) -> int:
        """Remove up to ``batch`` messages of ``topic`` with a seq up to ``upto_seq``; return
        how many went."""

    # -- receipts and the roster (components.store.receiptsql)

    def roster_touch(self, rows: Sequence[Tuple[str, str, int]]) -> int:
        """Record sign-ins ``(dept, user, ms)`` in one transaction (new users join the roster
        as signed in; known ones get ``last_seen`` moved on)."""

    def roster_import(self, rows: Sequence[Tuple[str, str]], ms: int) -> Tuple[int, int]:
        """Add ``(dept, user)`` rows as imported; answer ``(added, known)``."""

    def roster_remove(self, dept: str, user: str) -> bool:
        """Take the user off the roster; answer whether it was on it."""

    def roster(self, dept: str) -> List[Tuple[str, int, Optional[int], str]]:
        """The department's roster by user: ``(user, first_seen, last_seen, source)``."""

    def notices(self, ids: Sequence[int]) -> List[Notice]:
        """What receipts need of the stored notices among ``ids``."""

    def add_receipts(self, rows: Sequence[Tuple[int, str, str, str, int]]) -> int:
        """Record receipts ``(msg_id, state, dept, user, ms)`` in one transaction; repeats
        and notices that are gone are ignored."""

    def receipt_counts(self, notice: Notice) -> Tuple[int, int, int]:
        """``(audience, seen, delivered but not seen)`` of a notice."""

    def recipients(self, notice: Notice, state: str, after: Optional[Tuple[str, str]],
                   limit: int) -> List[Tuple[str, str, Optional[int]]]:
        """One page of the audience in ``state``, sorted: ``(dept, user, at)``."""

    def revoke(self, dept: str, user: str, at: int) -> int:
        """Record that the user ``dept``/``user`` is revoked at the second ``at``; return the row's id."""

    def revocations_since(self, after_id: int, since_at: int) -> List[Tuple[int, str, str, int]]:
        """The revocations ``(id, dept, user, at)`` with an id above ``after_id`` or an ``at``
        from ``since_at`` on, by id."""

    def prune_revocations(self, before_at: int) -> int:
        """Forget the revocations older than the second ``before_at``; return how many went."""

    def ping(self, write: bool) -> None:
        """A cheap round trip; with ``write``, through a write transaction."""

    def close(self) -> None:
        """Release connections."""

    @property
    def unavailable_errors(self) -> Tuple[Type[BaseException], ...]:
        """The store's exceptions that mean it is down, locked or frozen (the caller may retry)."""


def open_store(db: str, timeout: float = 5.0) -> Store:
    """The store that ``db`` names: a ``postgresql://`` URL or an SQLite file path. Nothing is
    connected yet (a store that is down does not stop a node from starting).

    :param timeout: seconds to connect, and the longest a statement or lock wait may take
    :rtype: Store
    """
    if is_postgres_url(db):
        # here, not at the top: psycopg is needed only for PostgreSQL (an embedded node runs without it)
        from components.store.postgres import PostgresStore
        return PostgresStore(db, timeout)
    return SqliteStore(db, timeout)
