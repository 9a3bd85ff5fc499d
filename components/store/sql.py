"""The SQL both stores run, written once: schema migrations, ``append`` and the history query.

The statements are plain SQL that SQLite and PostgreSQL both accept; the few differences
(the driver's placeholder, the id column's type, how a migration is locked) are a
:class:`Dialect`. :class:`SqlStore` implements the :class:`~components.store.Store`
interface on a DB-API connection; the back ends only say how to connect and how to lock.
"""

import json
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Dict, Iterator, List, Optional, Sequence, Tuple, TypeVar

from components.core.history import HistoryRequest, envelope_bytes, format_id
from components.core.messages import make_envelope
from components.core.retention import Floor, PrunedHistory, count_cut, pruned_past
from components.core.sendkeys import KEY_WINDOW_MS, Outgoing, Stored
from components.core.targets import Target
from components.core.tokens import Identity
from components.store.receiptsql import ReceiptsSql
from components.store.revocations import RevocationRows

T = TypeVar("T")


class DeadlinePassed(Exception):
    """A write's caller was answered ``unavailable`` before it could commit: rolled back."""


@dataclass(frozen=True)
class Dialect:
    """What differs between the SQL of the back ends.

    :ivar placeholder: the driver's parameter marker (``?`` or ``%s``)
    :ivar serial: the type of an auto-numbered primary key
    :ivar bigint: the type of a 64-bit integer column
    """

    placeholder: str
    serial: str
    bigint: str


SQLITE = Dialect(placeholder="?", serial="INTEGER PRIMARY KEY AUTOINCREMENT", bigint="INTEGER")
POSTGRES = Dialect(placeholder="%s", serial="BIGSERIAL PRIMARY KEY", bigint="BIGINT")


def migrations(d: Dialect) -> List[str]:
    """The schema migrations in order; the index + 1 is the schema version.

    :rtype: list
    """
    return [
        f"""
        CREATE TABLE messages (
            id          {d.serial},
            scope       TEXT NOT NULL,
            target      TEXT NOT NULL,
            target_dept TEXT,
            target_user TEXT,
            sender      TEXT NOT NULL,
            sender_dept TEXT NOT NULL,
            message     TEXT NOT NULL,
            ts          {d.bigint} NOT NULL
        );
        CREATE INDEX messages_dept ON messages (target_dept, id) WHERE scope = 'dept';
        CREATE INDEX messages_user ON messages (target_user, id) WHERE scope = 'user';
        CREATE INDEX messages_all ON messages (id) WHERE scope = 'all';
        """,
        # per-topic sequence numbers: a subscriber that sees seq jump knows it missed a message
        f"""
        ALTER TABLE messages ADD COLUMN seq {d.bigint};
        CREATE TABLE topic_seq (
            topic TEXT PRIMARY KEY,
            seq   {d.bigint} NOT NULL
        );
        """,
        # each row knows its topic, and a user is the pair (department, user): a direct
        # message's topic is deptcast.user.<dept>_<user> (it was deptcast.user.<user>, one
        # inbox for every department's bob). Direct messages are renumbered per new topic;
        # history reads only the reader's topics, through (topic, id) and (topic, seq).
        """
        ALTER TABLE messages ADD COLUMN topic TEXT;
        UPDATE messages SET topic = CASE scope
            WHEN 'all' THEN 'deptcast.all'
            WHEN 'dept' THEN 'deptcast.dept.' || target_dept
            ELSE 'deptcast.user.' || target_dept || '_' || target_user END;
        UPDATE messages SET seq = renumbered.n FROM (
            SELECT id, row_number() OVER (PARTITION BY topic ORDER BY id) AS n
            FROM messages WHERE scope = 'user' AND seq IS NOT NULL) AS renumbered
            WHERE messages.id = renumbered.id;
        DELETE FROM topic_seq WHERE topic LIKE 'deptcast.user.%';
        INSERT INTO topic_seq (topic, seq)
            SELECT topic, max(seq) FROM messages WHERE scope = 'user' AND seq IS NOT NULL GROUP BY topic;
        DROP INDEX messages_dept;
        DROP INDEX messages_user;
        DROP INDEX messages_all;
        CREATE INDEX messages_topic_id ON messages (topic, id);
        CREATE UNIQUE INDEX messages_topic_seq ON messages (topic, seq);
        """,
        # retention: per topic, the highest seq and id it removed (a reader whose position is
        # below them is told so instead of getting an answer with a hole)
        f"""
        CREATE TABLE pruned (
            topic TEXT PRIMARY KEY,
            seq   {d.bigint} NOT NULL,
            id    {d.bigint} NOT NULL
        );
        """,
        # receipts: the roster (who signed in as a member, or was imported) and one row per
        # notice, state and user (the first receipt of that state sets ``at``)
        f"""
        CREATE TABLE roster (
            dept       TEXT NOT NULL,
            usr        TEXT NOT NULL,
            source     TEXT NOT NULL,
            first_seen {d.bigint} NOT NULL,
            last_seen  {d.bigint},
            PRIMARY KEY (dept, usr)
        );
        CREATE TABLE receipts (
            msg_id {d.bigint} NOT NULL,
            state  TEXT NOT NULL,
            dept   TEXT NOT NULL,
            usr    TEXT NOT NULL,
            at     {d.bigint} NOT NULL,
            PRIMARY KEY (msg_id, state, dept, usr)
        );
        """,
        # safe retries: a sender's key names one notice for a day (kept apart from the
        # messages, so retention shorter than a day does not forget it); the first envelope is
        # kept as it was answered
        f"""
        CREATE TABLE send_keys (
            sender_dept TEXT NOT NULL,
            sender      TEXT NOT NULL,
            key         TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            envelope    TEXT NOT NULL,
            ts          {d.bigint} NOT NULL,
            PRIMARY KEY (sender_dept, sender, key)
        );
        CREATE INDEX send_keys_ts ON send_keys (ts);
        """,
        # revocations: a user's tokens issued at or before ``at`` (seconds) are refused; kept
        # for DEPTCAST_MAX_TOKEN_TTL (see components.store.revocations)
        f"""
        CREATE TABLE revocations (
            id      {d.serial},
            dept    TEXT NOT NULL,
            user_id TEXT NOT NULL,
            at      {d.bigint} NOT NULL
        );
        CREATE INDEX revocations_at ON revocations (at);
        """,
    ]


def statements(script: str) -> List[str]:
    """The statements of a migration script (split on ``;``)."""
    return [s for s in script.split(";") if s.strip()]


COLUMNS = "id, scope, target, target_dept, target_user, sender, sender_dept, message, ts, seq"


def _arm(p: str, where: str, order: str) -> str:
    return f"SELECT * FROM (SELECT {COLUMNS} FROM messages WHERE {where} ORDER BY {order} LIMIT {p}) AS arm"


def request_ranges(request: HistoryRequest) -> Tuple[str, List[Tuple[str, Any]]]:
    """A history request's mode (``positions``, ``latest`` or ``after``) and its ranges, one
    ``(topic, bound)`` per topic: the seq it has, or the id it read after.

    :rtype: tuple
    """
    if request.positions is not None:
        return "positions", sorted(request.positions.items())
    return ("latest" if request.latest else "after"), [(topic, request.after) for topic in request.topics]


def range_sql(p: str, mode: str) -> Tuple[str, str]:
    """The condition and order of one topic's range in ``mode``, its parameters ``(topic, bound)``.

    :rtype: tuple
    """
    if mode == "positions":
        return f"topic = {p} AND seq > {p}", "seq"
    if mode == "latest":
        return f"topic = {p} AND id > {p}", "id DESC"
    return f"topic = {p} AND id > {p}", "id"


def history_query(p: str, arms: int, mode: str) -> str:
    """The history query over ``arms`` topics, each read through its own index range.

    :param p: the driver's placeholder
    :param mode: ``after`` (oldest rows with an id above the given one), ``latest`` (the
        newest rows, newest first) or ``positions`` (rows with a seq above the given one)
    :returns: SQL whose parameters are ``(topic, after_or_seq, limit)`` per arm, then ``limit``
    :rtype: str
    """
    where, order = range_sql(p, mode)
    outer = "id DESC" if mode == "latest" else "id"
    union = " UNION ALL ".join(_arm(p, where, order) for _ in range(arms))
    return f"SELECT {COLUMNS} FROM ({union}) AS m ORDER BY {outer} LIMIT {p}"


def arm_query(p: str, number: int, mode: str) -> str:
    """One range of :func:`history_query` as a part of a ``UNION ALL``, its rows tagged with
    ``number`` (their first column).

    :returns: SQL whose parameters are ``(topic, after_or_seq, limit)``
    :rtype: str
    """
    where, order = range_sql(p, mode)
    return (f"SELECT {number} AS arm_no, {COLUMNS} FROM (SELECT {COLUMNS} FROM messages WHERE {where}"
            f" ORDER BY {order} LIMIT {p}) AS arm{number}")


def _row_id(row: Any) -> Any:
    return row[0]


def row_to_envelope(row) -> Dict[str, Any]:
    msg_id, scope, target, dept, user, sender, sender_dept, message, ts, seq = row
    extra = {"seq": seq} if seq is not None else {}
    return make_envelope(format_id(msg_id), Target(scope, target, dept, user),
                         Identity(sender, sender_dept), message, ts, **extra)


class SqlStore(ReceiptsSql, RevocationRows):
    """The store on DB-API connections, one per thread; subclasses connect and lock.

    Subclasses provide :meth:`_connect` (a new autocommit connection), :meth:`_write` (a
    context manager: one write transaction on this thread's connection, committed on exit),
    and may provide :meth:`_migration_lock` and :meth:`_append_lock`.
    """

    dialect: Dialect

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: List[Any] = []
        self._closed = False
        p = self.dialect.placeholder
        self._history_sql: Dict[Tuple[int, str], str] = {}
        # n appends to one topic take the seqs up to the one returned
        self._seq_many_sql = (f"INSERT INTO topic_seq (topic, seq) VALUES ({p}, {p})"
                              f" ON CONFLICT (topic) DO UPDATE SET seq = topic_seq.seq + {p} RETURNING seq")
        self._keys_pruned_at = float("-inf")

    # -- connections: one per thread (a connection must not run two queries at once)

    def _conn(self) -> Any:
        """This thread's connection, made (again) when missing or broken."""
        conn = getattr(self._local, "conn", None)
        if conn is None or self._is_broken(conn):
            if self._closed:
                raise RuntimeError("the store is closed")
            if conn is not None:
                self._discard(conn)
            conn = self._connect()
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _forget(self, conn: Any) -> None:
        """Close ``conn``; this thread makes a new connection on its next call."""
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None
        self._discard(conn)

    def _discard(self, conn: Any) -> None:
        with self._lock:
            if conn in self._connections:
                self._connections.remove(conn)
        try:
            conn.close()
        except Exception:  # a broken connection may fail to close; it is gone either way
            pass

    def close(self) -> None:
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for conn in connections:
            try:
                conn.close()
            except Exception:
                pass

    # -- what a back end provides

    def _connect(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _is_broken(self, conn: Any) -> bool:
        """Whether ``conn`` can no longer be used (the back end knows how to tell)."""
        return False

    @contextmanager
    def _write(self) -> Iterator[Any]:  # pragma: no cover - abstract
        raise NotImplementedError
        yield

    def _append_write(self) -> ContextManager[Any]:
        """The write transaction of a group commit (a back end may send its statements in
        fewer round trips)."""
        return self._write()

    def _batch(self, conn: Any, calls: Sequence[Tuple[str, Sequence[Any]]]) -> List[List[Any]]:
        """Run ``calls`` (statement, parameters) in order on ``conn``; the rows of each. A back
        end that can send them all before reading an answer does (one round trip)."""
        return [conn.execute(sql, params).fetchall() for sql, params in calls]

    def _migration_lock(self, conn: Any) -> None:
        """Serialise migrations of several processes (nothing to do where the write
        transaction already excludes other writers)."""

    def _append_lock(self, conn: Any) -> None:
        """Make appends commit in the order they take their ids (nothing to do where the
        write transaction already excludes other writers)."""

    def _read(self, sql: str, params: List[Any]) -> List[Any]:
        """Run a query on this thread's connection; one that turns out broken (it died while
        idle: the server restarted) is replaced and the read repeated once."""
        conn = self._conn()
        try:
            return conn.execute(sql, params).fetchall()
        except Exception:
            if not self._is_broken(conn):
                raise
        return self._conn().execute(sql, params).fetchall()

    # -- the Store interface

    def migrate(self) -> int:
        p = self.dialect.placeholder
        with self._write() as conn:
            self._migration_lock(conn)
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            version = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]
            scripts = migrations(self.dialect)
            for number, script in enumerate(scripts[version:], start=version + 1):
                for statement in statements(script):
                    conn.execute(statement)
                conn.execute(f"INSERT INTO schema_version (version) VALUES ({p})", (number,))
                version = number
        return version

    def append(self, target: Target, sender: Identity, message: str, ts: int) -> Dict[str, Any]:
        stored = self.append_many([Outgoing(target, sender, message, ts)])[0]
        assert stored.envelope is not None  # no key: never a conflict
        return stored.envelope

    def append_many(self, items: Sequence[Outgoing],
                    before_commit: Optional[Callable[[], bool]] = None) -> List[Stored]:
        """Store ``items`` in one transaction (group commit), in order; one :class:`Stored`
        per item.

        A keyed item whose sender already used its key (before, or earlier in ``items``) is
        answered that first envelope and stores nothing; with another target or message it is
        a conflict. Key rows are inserted with ``ON CONFLICT DO NOTHING``: a conflict never
        aborts the batch.

        :param before_commit: asked just before the commit; ``False`` (the caller's deadline
            passed, it was answered ``unavailable``) rolls everything back
            (:class:`DeadlinePassed`)
        :rtype: list
        """
        with self._append_write() as conn:
            self._append_lock(conn)
            results = self._append_in(conn, items)
            self._prune_keys(conn, items)
            if before_commit is not None and not before_commit():
                raise DeadlinePassed()
        return results

    def _append_in(self, conn: Any, items: Sequence[Outgoing]) -> List[Stored]:
        known = self._known_keys(conn, [item for item in items if item.key])
        results: List[Optional[Stored]] = [None] * len(items)
        fresh: List[Tuple[int, Outgoing]] = []
        first_of: Dict[Tuple[str, str, str], int] = {}
        repeats: List[Tuple[int, int]] = []  # (item, the earlier item of this batch with its key)
        for n, item in enumerate(items):
            if item.key:
                k = (item.sender.dept, item.sender.user, item.key)
                if k in known:
                    fp, envelope = known[k]
                    results[n] = Stored(envelope if fp == item.fingerprint else None, False)
                    continue
                if k in first_of:
                    repeats.append((n, first_of[k]))
                    continue
                first_of[k] = n
            fresh.append((n, item))
        # the topics' rows stay locked until commit: sends to one topic take their seq and
        # their id in the same order, on every node
        counts: Dict[str, int] = {}
        for _, item in fresh:
            counts[item.target.topic] = counts.get(item.target.topic, 0) + 1
        next_seq: Dict[str, int] = {}
        topics = sorted(counts)
        heads = self._batch(conn, [(self._seq_many_sql, (topic, counts[topic], counts[topic])) for topic in topics])
        for topic, head in zip(topics, heads):
            next_seq[topic] = head[0][0] - counts[topic] + 1
        rows: List[Tuple[Any, ...]] = []
        for _, item in fresh:
            t = item.target
            seq = next_seq[t.topic]
            next_seq[t.topic] = seq + 1
            rows.append((t.scope, t.target, t.dept, t.user, item.sender.user, item.sender.dept, item.message,
                         item.ts, seq, t.topic))
        ids: Dict[Tuple[str, int], int] = {}
        inserted = self._batch(conn, self._insert_calls(rows))
        for answer in inserted:
            for msg_id, topic, seq in answer:
                ids[(topic, seq)] = msg_id
        key_rows: List[Tuple[Any, ...]] = []
        for (n, item), row in zip(fresh, rows):
            seq = row[8]
            envelope = make_envelope(format_id(ids[(item.target.topic, seq)]), item.target, item.sender,
                                     item.message, item.ts, seq=seq)
            results[n] = Stored(envelope, True)
            if item.key:
                key_rows.append((item.sender.dept, item.sender.user, item.key, item.fingerprint,
                                 json.dumps(envelope, separators=(",", ":")), item.ts))
        for sql, params in self._keys_calls(key_rows):
            conn.execute(sql, params)
        for n, first in repeats:
            earlier = results[first]
            assert earlier is not None and earlier.envelope is not None  # fresh: stored above
            same = items[n].fingerprint == items[first].fingerprint
            results[n] = Stored(earlier.envelope if same else None, False)
        return [r for r in results if r is not None]

    def _insert_calls(self, rows: Sequence[Tuple[Any, ...]]) -> List[Tuple[str, Sequence[Any]]]:
        """The statements inserting ``rows`` into ``messages`` (each answers ``id, topic, seq``)."""
        return [(self._insert_sql(len(chunk)), [v for row in chunk for v in row])
                for chunk in _chunks(rows, INSERT_CHUNK)]

    def _keys_calls(self, rows: Sequence[Tuple[Any, ...]]) -> List[Tuple[str, Sequence[Any]]]:
        """The statements inserting ``rows`` into ``send_keys``, a stored key left as it is."""
        return [(self._keys_sql(len(chunk)), [v for row in chunk for v in row])
                for chunk in _chunks(rows, INSERT_CHUNK)]

    def _insert_sql(self, rows: int) -> str:
        p = self.dialect.placeholder
        values = ", ".join([f"({', '.join([p] * 10)})"] * rows)
        return ("INSERT INTO messages (scope, target, target_dept, target_user, sender, sender_dept,"
                f" message, ts, seq, topic) VALUES {values} RETURNING id, topic, seq")

    def _keys_sql(self, rows: int) -> str:
        p = self.dialect.placeholder
        values = ", ".join([f"({', '.join([p] * 6)})"] * rows)
        return ("INSERT INTO send_keys (sender_dept, sender, key, fingerprint, envelope, ts)"
                f" VALUES {values} ON CONFLICT DO NOTHING")

    def _known_keys(self, conn: Any, items: Sequence[Outgoing]) -> Dict[Tuple[str, str, str], Tuple[str, Dict]]:
        """The stored keys among ``items``': ``{(dept, user, key): (fingerprint, envelope)}``."""
        p = self.dialect.placeholder
        by_sender: Dict[Tuple[str, str], List[str]] = {}
        for item in items:
            assert item.key is not None
            by_sender.setdefault((item.sender.dept, item.sender.user), []).append(item.key)
        calls: List[Tuple[str, Sequence[Any]]] = []
        senders: List[Tuple[str, str]] = []
        for (dept, user), keys in by_sender.items():
            for chunk in _chunks(sorted(set(keys)), HEADS_CHUNK):
                sql = ("SELECT key, fingerprint, envelope FROM send_keys WHERE sender_dept = "
                       f"{p} AND sender = {p} AND key IN ({', '.join([p] * len(chunk))})")
                calls.append((sql, [dept, user, *chunk]))
                senders.append((dept, user))
        found: Dict[Tuple[str, str, str], Tuple[str, Dict]] = {}
        for (dept, user), answer in zip(senders, self._batch(conn, calls)):
            for key, fp, envelope in answer:
                found[(dept, user, key)] = (fp, json.loads(envelope))
        return found

    def sent_keys(self, sender: Identity, keys: Sequence[str]) -> Dict[str, Tuple[str, Dict[str, Any]]]:
        """What ``sender`` stored under ``keys``: ``{key: (fingerprint, first envelope)}``.

        :rtype: dict
        """
        items = [Outgoing(_NO_TARGET, sender, "", 0, key) for key in keys]
        found = self._known_keys(self._conn(), items)
        return {key: value for (_, _, key), value in found.items()}

    def _prune_keys(self, conn: Any, items: Sequence[Outgoing]) -> None:
        """Once a minute, in an append's transaction: forget keys older than a day."""
        now = time.monotonic()
        if not items or now - self._keys_pruned_at < KEYS_PRUNE_EVERY:
            return
        self._keys_pruned_at = now
        cutoff = max(item.ts for item in items) - KEY_WINDOW_MS
        conn.execute(f"DELETE FROM send_keys WHERE ts < {self.dialect.placeholder}", (cutoff,))

    def history(self, request: HistoryRequest) -> List[Dict[str, Any]]:
        mode, arms = request_ranges(request)
        if not arms:
            return []
        key = (len(arms), mode)
        if key not in self._history_sql:
            self._history_sql[key] = history_query(self.dialect.placeholder, len(arms), mode)
        params: List[Any] = []
        for topic, bound in arms:
            params += [topic, bound, request.limit]
        params.append(request.limit)
        rows = self._read(self._history_sql[key], params)
        # read after the rows: a prune that committed before them shows here
        self._check_pruned(self._conn(), request)
        kept = within_bytes(rows, request.max_bytes)
        if mode == "latest":
            kept.reverse()
        return [row_to_envelope(r) for r in kept]

    def history_many(self, requests: Sequence[HistoryRequest]) -> List[Any]:
        """The answers of several history requests read together: per request, its envelopes
        (exactly what :meth:`history` answers) or the :class:`PrunedHistory` it raises.

        Concurrent readers mostly ask for the same topics from the same place (a department's
        members after a node restart): each distinct range (topic, position, page size) is
        read once for all of them, and what retention removed on their topics in the same
        statement (one statement per :data:`ARMS_CHUNK` ranges: one round trip for a batch,
        where each request alone made one). Each request's answer is the merge of its
        ranges, cut as the single query cuts it.

        :rtype: list
        """
        wanted: List[List[Tuple[str, str, int, int]]] = []  # per request: its arms (mode, topic, bound, limit)
        for request in requests:
            mode, ranges = request_ranges(request)
            wanted.append([(mode, topic, bound, request.limit) for topic, bound in ranges])
        arms_read = sorted({arm for arms in wanted for arm in arms})
        checked = {i for i, request in enumerate(requests)
                   if request.positions is not None or (request.after and not request.latest)}
        floor_topics = sorted({arm[1] for i in checked for arm in wanted[i]})
        rows_of: Dict[Tuple[str, str, int, int], List[Any]] = {arm: [] for arm in arms_read}
        floors: Dict[str, Floor] = {}
        p = self.dialect.placeholder
        chunks = list(_chunks(arms_read, ARMS_CHUNK)) or [[]]
        for n, chunk in enumerate(chunks):
            parts, params = [], []
            for i, (mode, topic, bound, limit) in enumerate(chunk):
                parts.append(self._arm_sql(i, mode))
                params += [topic, bound, limit]
            if n == len(chunks) - 1 and floor_topics:
                # what retention removed, in the same statement (so after the rows, as history()
                # reads it): -1 rows carry (topic, seq, id) of each floor
                parts.append(f"SELECT -1, id, NULL, topic, NULL, NULL, NULL, NULL, NULL, NULL, seq FROM pruned"
                             f" WHERE topic IN ({', '.join([p] * len(floor_topics))})")
                params += floor_topics
            if not parts:
                continue
            for row in self._read(" UNION ALL ".join(parts), params):
                if row[0] < 0:
                    floors[row[3]] = Floor(row[10], row[1])
                else:
                    rows_of[chunk[row[0]]].append(row[1:])
        answers: List[Any] = []
        for i, (request, arms) in enumerate(zip(requests, wanted)):
            if i in checked:
                gone = pruned_past(request, floors)  # (it looks at the request's own topics only)
                if gone:
                    answers.append(PrunedHistory(gone))
                    continue
            latest = bool(arms) and arms[0][0] == "latest"
            rows = sorted((r for arm in arms for r in rows_of.get(arm, ())), key=_row_id, reverse=latest)
            kept = within_bytes(rows[:request.limit], request.max_bytes)
            if latest:
                kept.reverse()
            answers.append([row_to_envelope(r) for r in kept])
        return answers

    def _arm_sql(self, number: int, mode: str) -> str:
        key = (-number - 1, mode)  # (the single query's statements are keyed by positive counts)
        if key not in self._history_sql:
            self._history_sql[key] = arm_query(self.dialect.placeholder, number, mode)
        return self._history_sql[key]

    def heads(self, topics: Sequence[str]) -> Dict[str, int]:
        # topic_seq holds each topic's last seq; an append updates it in its own transaction,
        # so a reader sees only committed numbers (every lower one is committed too)
        p = self.dialect.placeholder
        found: Dict[str, int] = {}
        wanted = sorted(set(topics))
        for i in range(0, len(wanted), HEADS_CHUNK):
            chunk = wanted[i:i + HEADS_CHUNK]
            sql = f"SELECT topic, seq FROM topic_seq WHERE topic IN ({', '.join([p] * len(chunk))})"
            for topic, seq in self._conn().execute(sql, chunk).fetchall():
                found[topic] = seq
        return found


    # -- retention (see components.core.retention)

    def _prune_lock(self, conn: Any) -> bool:
        """Whether this transaction may prune (one node at a time, where several share the
        store; nothing to do where the write transaction already excludes other writers)."""
        return True

    def floors(self, conn: Any, topics: Sequence[str]) -> Dict[str, Floor]:
        """What retention removed on ``topics`` (only topics it touched are in the answer).

        :rtype: dict
        """
        if not topics:
            return {}
        p = self.dialect.placeholder
        rows = conn.execute(f"SELECT topic, seq, id FROM pruned WHERE topic IN ({', '.join([p] * len(topics))})",
                            list(topics)).fetchall()
        return {topic: Floor(seq, msg_id) for topic, seq, msg_id in rows}

    def _check_pruned(self, conn: Any, request: HistoryRequest) -> None:
        topics = sorted(request.positions) if request.positions is not None else list(request.topics)
        if request.positions is None and (not request.after or request.latest):
            return  # asks for what there is: nothing to compare with
        gone = pruned_past(request, self.floors(conn, topics))
        if gone:
            raise PrunedHistory(gone)

    def _raise_floors(self, conn: Any, removed: Dict[str, Tuple[int, int]]) -> None:
        """Record what was removed: per topic, (highest seq, highest id)."""
        p = self.dialect.placeholder
        for topic, (seq, msg_id) in removed.items():
            conn.execute(f"INSERT INTO pruned (topic, seq, id) VALUES ({p}, {p}, {p}) ON CONFLICT (topic) DO UPDATE"
                         " SET seq = CASE WHEN excluded.seq > pruned.seq THEN excluded.seq ELSE pruned.seq END,"
                         " id = CASE WHEN excluded.id > pruned.id THEN excluded.id ELSE pruned.id END",
                         (topic, seq, msg_id))

    def prune_older(self, cutoff_ts: int, batch: int) -> int:
        """Remove up to ``batch`` of the oldest messages with a ``ts`` below ``cutoff_ts``, in one
        short transaction; return how many went.

        Ids grow with time, so the old messages are the lowest ids: the primary key's index
        finds them, and the delete is a range of it.

        :rtype: int
        """
        p = self.dialect.placeholder
        with self._write() as conn:
            if not self._prune_lock(conn):
                return 0
            oldest = conn.execute(f"SELECT id, ts FROM messages ORDER BY id LIMIT {p}", (batch,)).fetchall()
            old_ids = [msg_id for msg_id, ts in oldest if ts < cutoff_ts]
            if not old_ids:
                return 0
            gone = conn.execute(f"DELETE FROM messages WHERE id <= {p} AND ts < {p} RETURNING topic, seq, id",
                                (max(old_ids), cutoff_ts)).fetchall()
            removed: Dict[str, Tuple[int, int]] = {}
            for topic, seq, msg_id in gone:
                top_seq, top_id = removed.get(topic, (0, 0))
                removed[topic] = (max(top_seq, seq or 0), max(top_id, msg_id))
            self._raise_floors(conn, removed)
            self._drop_receipts(conn, [msg_id for _, _, msg_id in gone])
        return len(gone)

    def topics_over(self, keep: int, limit: int = 1000) -> List[Tuple[str, int]]:
        """Topics holding more than ``keep`` messages, each with the seq up to which its
        messages go (at most ``limit`` topics).

        :rtype: list
        """
        p = self.dialect.placeholder
        rows = self._conn().execute(
            "SELECT t.topic, t.seq, coalesce(f.seq, 0) FROM topic_seq AS t LEFT JOIN pruned AS f ON f.topic = t.topic"
            f" WHERE t.seq - coalesce(f.seq, 0) > {p} ORDER BY t.topic LIMIT {p}", (keep, limit)).fetchall()
        return [(topic, cut) for topic, top, floor in rows if (cut := count_cut(top, floor, keep)) is not None]

    def prune_topic(self, topic: str, upto_seq: int, batch: int) -> int:
        """Remove the messages of ``topic`` with a seq up to ``upto_seq``, at most ``batch`` of
        them, in one short transaction (through the (topic, seq) index); return how many went.

        :rtype: int
        """
        p = self.dialect.placeholder
        with self._write() as conn:
            if not self._prune_lock(conn):
                return 0
            floor = self.floors(conn, [topic]).get(topic, Floor(0, 0))
            upto = min(upto_seq, floor.seq + batch)
            if upto <= floor.seq:
                return 0
            gone = conn.execute(f"DELETE FROM messages WHERE topic = {p} AND seq > {p} AND seq <= {p} RETURNING id",
                                (topic, floor.seq, upto)).fetchall()
            self._raise_floors(conn, {topic: (upto, max([floor.id] + [r[0] for r in gone]))})
            self._drop_receipts(conn, [r[0] for r in gone])
        return len(gone)

    def ping(self, write: bool) -> None:
        """A cheap round trip; with ``write``, through a write transaction (SQLite: it takes
        the write lock, so a file another process locks shows as writes failing)."""
        if write:
            with self._write() as conn:
                conn.execute("SELECT 1").fetchone()
        else:
            # as every read: a connection that died while idle is replaced, not reported
            self._read("SELECT 1", [])


#: topics per ``heads`` query (SQLite allows 999 parameters)
HEADS_CHUNK = 500
#: ranges per query of :meth:`SqlStore.history_many` (3 parameters each)
ARMS_CHUNK = 200
#: rows per multi-row INSERT (10 parameters each: within SQLite's 32766)
INSERT_CHUNK = 500
#: seconds between two removals of keys older than a day
KEYS_PRUNE_EVERY = 60.0
#: the target of a key lookup (only the sender and the key matter)
_NO_TARGET = Target("all", "All")


def _chunks(values: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for i in range(0, len(values), size):
        yield values[i:i + size]


def within_bytes(rows: List[Any], max_bytes: int) -> List[Any]:
    """The leading ``rows`` whose envelopes fit in ``max_bytes`` (at least one row), each
    counted at the most it can take in a WAMP message (:func:`envelope_bytes`).

    :rtype: list
    """
    kept: List[Any] = []
    size = 0
    for row in rows:
        size += envelope_bytes(row[7])
        if kept and size > max_bytes:
            break
        kept.append(row)
    return kept
