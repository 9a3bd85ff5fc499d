"""The revocations table, shared by the SQLite and PostgreSQL stores (mixed into
:class:`~components.store.sql.SqlStore`): one row per revocation, ``(id, dept, user_id, at)``,
``at`` being the second of the revocation. Nodes read the rows past the last id they saw, and
again those of the last :data:`LOOKBACK` seconds (a PostgreSQL id is taken before its row
commits, so a row may become visible after one with a higher id)."""

from typing import Any, ContextManager, List, Tuple

#: seconds of rows read again at every poll (the longest a revoke's transaction may take)
LOOKBACK = 30


class RevocationRows:
    """``revoke``, ``revocations_since`` and ``prune_revocations`` over a store's connections
    (the mixing class provides ``dialect``, ``_write`` and ``_read``)."""

    dialect: Any

    def _write(self) -> ContextManager[Any]:  # pragma: no cover - provided by the store
        raise NotImplementedError

    def _read(self, sql: str, params: List[Any]) -> List[Any]:  # pragma: no cover - provided by the store
        raise NotImplementedError

    def revoke(self, dept: str, user: str, at: int) -> int:
        """Record that ``dept``/``user`` is revoked at the second ``at``; return the row's id."""
        p = self.dialect.placeholder
        with self._write() as conn:
            return int(conn.execute(f"INSERT INTO revocations (dept, user_id, at) VALUES ({p}, {p}, {p}) "
                                    f"RETURNING id", (dept, user, at)).fetchone()[0])

    def revocations_since(self, after_id: int, since_at: int) -> List[Tuple[int, str, str, int]]:
        """The revocations with an id above ``after_id`` or an ``at`` from ``since_at`` on, as
        ``(id, dept, user, at)``, by id."""
        p = self.dialect.placeholder
        rows = self._read(f"SELECT id, dept, user_id, at FROM revocations WHERE id > {p} OR at >= {p} ORDER BY id",
                          [after_id, since_at])
        return [(int(i), str(d), str(u), int(a)) for i, d, u, a in rows]

    def prune_revocations(self, before_at: int) -> int:
        """Forget the revocations older than the second ``before_at``; return how many went."""
        p = self.dialect.placeholder
        with self._write() as conn:
            return len(conn.execute(f"DELETE FROM revocations WHERE at < {p} RETURNING id", (before_at,)).fetchall())
