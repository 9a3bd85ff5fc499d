"""The SQL of receipts and the roster, for both stores (a mixin of
:class:`~components.store.sql.SqlStore`).

Tables (see the migration in :func:`components.store.sql.migrations`):

- ``roster (dept, usr, source, first_seen, last_seen)``: who is in the audiences; sign-ins
  arrive in bulk (one statement per batch of users, whatever the number of connects);
- ``receipts (msg_id, state, dept, usr, at)``: one row per notice, state and user, inserted
  in bulk; a repeat is ignored, so the first receipt of a state sets ``at``.

An audience is never written down: a department or ``All`` notice's audience is counted from
the roster when asked (the receipts join the roster), a direct notice's is its one user.
"""

from typing import Any, Iterator, List, Optional, Sequence, Tuple

from components.core import names
from components.core.receipts import IMPORTED, SIGNED_IN, Notice
from components.core.targets import SCOPE_ALL, SCOPE_DEPT

#: rows per statement where a list goes into ``IN (...)`` (SQLite allows 999 parameters)
CHUNK = 500


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


class ReceiptsSql:
    """Receipts and roster statements; the class that mixes it in provides ``dialect``,
    ``_write()``, ``_read(sql, params)`` and ``_conn()``."""

    dialect: Any
    _write: Any
    _read: Any

    # -- the roster

    def roster_touch(self, rows: Sequence[Tuple[str, str, int]]) -> int:
        """Record sign-ins ``(dept, user, ms)`` in one transaction: new users join the roster
        as signed in, known ones get their ``last_seen`` moved on.

        :returns: how many rows were written
        """
        if not rows:
            return 0
        p = self.dialect.placeholder
        sql = ("INSERT INTO roster (dept, usr, source, first_seen, last_seen)"
               f" VALUES ({p}, {p}, '{SIGNED_IN}', {p}, {p})"
               " ON CONFLICT (dept, usr) DO UPDATE SET last_seen = CASE WHEN roster.last_seen IS NULL"
               " OR excluded.last_seen > roster.last_seen THEN excluded.last_seen ELSE roster.last_seen END")
        with self._write() as conn:
            conn.cursor().executemany(sql, [(dept, user, ms, ms) for dept, user, ms in rows])
        return len(rows)

    def roster_import(self, rows: Sequence[Tuple[str, str]], ms: int) -> Tuple[int, int]:
        """Add ``(dept, user)`` rows as imported; answer ``(added, known)``."""
        p = self.dialect.placeholder
        sql = ("INSERT INTO roster (dept, usr, source, first_seen, last_seen)"
               f" VALUES ({p}, {p}, '{IMPORTED}', {p}, NULL)"
               " ON CONFLICT (dept, usr) DO NOTHING")
        added = 0
        with self._write() as conn:
            for dept, user in rows:
                added += max(conn.execute(sql, (dept, user, ms)).rowcount, 0)
        return added, len(rows) - added

    def roster_remove(self, dept: str, user: str) -> bool:
        """Take the user off the roster; answer whether it was on it."""
        p = self.dialect.placeholder
        with self._write() as conn:
            gone = conn.execute(f"DELETE FROM roster WHERE dept = {p} AND usr = {p}", (dept, user)).rowcount
        return gone > 0

    def roster(self, dept: str) -> List[Tuple[str, int, Optional[int], str]]:
        """The department's roster, by user: ``(user, first_seen, last_seen, source)``."""
        p = self.dialect.placeholder
        return [tuple(r) for r in self._read(f"SELECT usr, first_seen, last_seen, source FROM roster WHERE dept = {p}"
                                             " ORDER BY usr", [dept])]

    # -- receipts

    def notices(self, ids: Sequence[int]) -> List[Notice]:
        """What receipts need of the stored notices among ``ids`` (unknown ids are left out)."""
        p = self.dialect.placeholder
        found: List[Notice] = []
        for chunk in _chunks(sorted(set(ids))):
            rows = self._read("SELECT id, scope, target_dept, target_user, sender_dept, sender FROM messages"
                              f" WHERE id IN ({', '.join([p] * len(chunk))})", list(chunk))
            found += [Notice(*r) for r in rows]
        return found

    def add_receipts(self, rows: Sequence[Tuple[int, str, str, str, int]]) -> int:
        """Record receipts ``(msg_id, state, dept, user, ms)`` in one transaction; a repeat
        (same notice, state and user) is ignored, and so is a notice that is gone.

        :returns: how many rows were offered
        """
        if not rows:
            return 0
        p = self.dialect.placeholder
        sql = (f"INSERT INTO receipts (msg_id, state, dept, usr, at) SELECT {p}, {p}, {p}, {p}, {p}"
               f" WHERE EXISTS (SELECT 1 FROM messages WHERE id = {p}) ON CONFLICT DO NOTHING")
        with self._write() as conn:
            conn.cursor().executemany(sql, [(m, s, d, u, at, m) for m, s, d, u, at in rows])
        return len(rows)

    def _audience(self, notice: Notice, alias: str) -> Tuple[str, List[Any]]:
        """The condition that a roster row ``alias`` is in a department or All notice's audience."""
        p = self.dialect.placeholder
        where = f"NOT ({alias}.dept = {p} AND {alias}.usr = {p})"
        params: List[Any] = [notice.sender_dept, notice.sender]
        if notice.scope == SCOPE_DEPT:
            where += f" AND {alias}.dept = {p}"
            params.append(notice.dept)
        return where, params

    def receipt_counts(self, notice: Notice) -> Tuple[int, int, int]:
        """``(audience, seen, delivered but not seen)`` of a notice."""
        p = self.dialect.placeholder
        not_seen = (f"NOT EXISTS (SELECT 1 FROM receipts s WHERE s.msg_id = r.msg_id AND s.state = '{names.SEEN}'"
                    " AND s.dept = r.dept AND s.usr = r.usr)")
        if notice.scope not in (SCOPE_DEPT, SCOPE_ALL):
            if notice.dept == notice.sender_dept and notice.user == notice.sender:
                return 0, 0, 0  # a note to oneself: the sender is never in the audience
            seen_at, delivered_at = self._direct_states(notice)
            return 1, int(seen_at is not None), int(seen_at is None and delivered_at is not None)
        aud, params = self._audience(notice, "o")
        joined = "FROM receipts r JOIN roster o ON o.dept = r.dept AND o.usr = r.usr"
        sql = (f"SELECT (SELECT count(*) FROM roster o WHERE {aud}),"
               f" (SELECT count(*) {joined} WHERE r.msg_id = {p} AND r.state = '{names.SEEN}' AND {aud}),"
               f" (SELECT count(*) {joined} WHERE r.msg_id = {p} AND r.state = '{names.DELIVERED}' AND {aud}"
               f" AND {not_seen})")
        row = self._read(sql, params + [notice.id] + params + [notice.id] + params)[0]
        return int(row[0]), int(row[1]), int(row[2])

    def recipients(self, notice: Notice, state: str, after: Optional[Tuple[str, str]],
                   limit: int) -> List[Tuple[str, str, Optional[int]]]:
        """One page of the audience in ``state``, sorted by (dept, user): ``(dept, user, at)``
        (``at`` is ``None`` for pending)."""
        p = self.dialect.placeholder
        if notice.scope not in (SCOPE_DEPT, SCOPE_ALL):
            assert notice.dept is not None and notice.user is not None  # a direct notice's target
            seen, delivered = self._direct_states(notice)
            mine = {names.SEEN: seen, names.DELIVERED: None if seen is not None else delivered}.get(state)
            is_pending = seen is None and delivered is None
            who = (notice.dept, notice.user)
            if after is not None and who <= after:
                return []
            if state == names.PENDING:
                return [(notice.dept, notice.user, None)] if is_pending else []
            return [(notice.dept, notice.user, mine)] if mine is not None else []
        aud, params = self._audience(notice, "o")
        page = f" AND (o.dept > {p} OR (o.dept = {p} AND o.usr > {p}))" if after is not None else ""
        page_params: List[Any] = [after[0], after[0], after[1]] if after is not None else []
        if state == names.PENDING:
            sql = (f"SELECT o.dept, o.usr, NULL FROM roster o WHERE {aud}{page}"
                   f" AND NOT EXISTS (SELECT 1 FROM receipts r WHERE r.msg_id = {p} AND r.dept = o.dept"
                   f" AND r.usr = o.usr) ORDER BY o.dept, o.usr LIMIT {p}")
            rows = self._read(sql, params + page_params + [notice.id, limit])
        else:
            extra = ""
            if state == names.DELIVERED:
                extra = (f" AND NOT EXISTS (SELECT 1 FROM receipts s WHERE s.msg_id = r.msg_id AND s.state = "
                         f"'{names.SEEN}' AND s.dept = r.dept AND s.usr = r.usr)")
            sql = (f"SELECT o.dept, o.usr, r.at FROM receipts r JOIN roster o ON o.dept = r.dept AND o.usr = r.usr"
                   f" WHERE r.msg_id = {p} AND r.state = {p} AND {aud}{page}{extra} ORDER BY o.dept, o.usr LIMIT {p}")
            rows = self._read(sql, [notice.id, state] + params + page_params + [limit])
        return [(d, u, at) for d, u, at in rows]

    def _direct_states(self, notice: Notice) -> Tuple[Optional[int], Optional[int]]:
        """When a direct notice's user saw it and had it delivered (``None``: not yet)."""
        p = self.dialect.placeholder
        rows = self._read(f"SELECT state, at FROM receipts WHERE msg_id = {p} AND dept = {p} AND usr = {p}",
                          [notice.id, notice.dept, notice.user])
        at = {state: ms for state, ms in rows}
        return at.get(names.SEEN), at.get(names.DELIVERED)

    def _drop_receipts(self, conn: Any, ids: Sequence[int]) -> None:
        """Retention: the receipts of removed notices go with them (in the same transaction)."""
        p = self.dialect.placeholder
        for chunk in _chunks(sorted(set(ids))):
            conn.execute(f"DELETE FROM receipts WHERE msg_id IN ({', '.join([p] * len(chunk))})", list(chunk))
