"""The PostgreSQL store: one database shared by every node of a cluster.

The schema is created and migrated on start; several nodes starting at once take a
transaction-level advisory lock, so exactly one of them applies each migration.

Every connection has deadlines: to connect, per statement and per lock wait, so a database
that stops answering fails calls instead of hanging them; TCP keepalives notice a server that
went away. Each thread of the :class:`~components.store.threaded.ThreadedStore` pool has its
own connection (a psycopg connection must not run two queries at once); a broken one is
replaced on its next use. A connection that died while idle (the server restarted) is only
found out when it is used: then it is replaced at once and the call goes on, since nothing
was done on it yet (a write's ``BEGIN`` failed; a read can be repeated).
"""

import json
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Sequence, Tuple

import psycopg
from psycopg.conninfo import conninfo_to_dict

from components.store.sql import POSTGRES, SqlStore

#: advisory lock namespaces (the second key is the schema's hash): migrations, and appends
_MIGRATION_LOCK = 0x64637374  # "dcst"
_APPEND_LOCK = 0x64637361  # "dcsa"
_PRUNE_LOCK = 0x64637370  # "dcsp"


#: a group's messages in one statement of a fixed text whatever their number: one JSON array of
#: rows (made by the json module's C encoder, where psycopg's array dumper turned every value of
#: every column into an array element in Python, in the writer thread, under the append lock:
#: 52 against 20 µs of the writer's CPU per notice in groups of 400); the server prepares it
#: once, parses it once (jsonb: ``json``'s ``->>`` parses the row again for every field), and
#: inserts the rows in their order (ids follow it)
_INSERT_MESSAGES = ("INSERT INTO messages (scope, target, target_dept, target_user, sender, sender_dept, message, ts,"
                    " seq, topic) SELECT r->>0, r->>1, r->>2, r->>3, r->>4, r->>5, r->>6, (r->>7)::bigint,"
                    " (r->>8)::bigint, r->>9 FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS e(r, n) ORDER BY n"
                    " RETURNING id, topic, seq")
_INSERT_KEYS = ("INSERT INTO send_keys (sender_dept, sender, key, fingerprint, envelope, ts) SELECT r->>0, r->>1,"
                " r->>2, r->>3, r->>4, (r->>5)::bigint FROM jsonb_array_elements(%s::jsonb) AS e(r)"
                " ON CONFLICT DO NOTHING")


def _json_rows(rows: Sequence[Tuple[Any, ...]]) -> str:
    """``rows`` as one JSON array of arrays (the parameter of :data:`_INSERT_MESSAGES` and
    :data:`_INSERT_KEYS`)."""
    return json.dumps(rows, ensure_ascii=False, separators=(",", ":"))


def connection_params(url: str, timeout: float) -> Dict[str, Any]:
    """The psycopg connection parameters of ``url`` plus deptcast's deadlines.

    Options already in the URL (e.g. ``-c search_path=...``) are kept.

    :rtype: dict
    """
    params = conninfo_to_dict(url)
    ms = max(1, int(timeout * 1000))
    deadlines = f"-c statement_timeout={ms} -c lock_timeout={ms} -c idle_in_transaction_session_timeout={4 * ms}"
    # psycopg prepares a statement it has run five times; the server then plans it once for any
    # parameters (a generic plan) when that looks as cheap. For the statements of a group commit
    # (groups of the same size repeat: batches of 100 make groups of 100, 200, ...) the generic
    # plans cost the server about six times the CPU of plans made for the parameters at hand,
    # under the append lock: 125 against 20 µs per notice, 160 against 27 ms per group, in
    # groups of 400. A prepared statement is still parsed once; it is planned for its
    # parameters each time.
    options = f"{deadlines} -c plan_cache_mode=force_custom_plan"
    params["options"] = f"{params['options']} {options}" if params.get("options") else options
    params.setdefault("connect_timeout", max(1, int(round(timeout))))
    params.setdefault("keepalives", 1)
    params.setdefault("keepalives_idle", 5)
    params.setdefault("keepalives_interval", 2)
    params.setdefault("keepalives_count", 3)
    params.setdefault("application_name", "deptcast")
    return params


class PostgresStore(SqlStore):
    """The store on a PostgreSQL database, named by a ``postgresql://`` URL.

    The schema is the connection's ``search_path`` (e.g. ``?options=-c%20search_path%3Ddeptcast``
    in the URL); by default ``public``.

    :param url: the connection URL (it may hold a password: never log it)
    :param timeout: seconds to connect, and the longest a statement or lock wait may take
    """

    dialect = POSTGRES
    #: what psycopg raises when the server is down, unreachable, frozen past a deadline or
    #: restarting (statement and lock timeouts are OperationalErrors too)
    unavailable_errors = (psycopg.OperationalError, psycopg.InterfaceError)

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        super().__init__()
        self._params = connection_params(url, timeout)

    def _connect(self) -> psycopg.Connection:
        return psycopg.connect(autocommit=True, **self._params)

    def _is_broken(self, conn: psycopg.Connection) -> bool:
        return conn.closed or conn.broken

    @contextmanager
    def _write(self, pipelined: bool = False) -> Iterator[Any]:
        conn = self._conn()
        try:
            conn.execute("BEGIN")
        except psycopg.OperationalError:
            if not self._is_broken(conn):
                raise
            # it died while idle: nothing was sent on it, so begin again on a new one
            conn = self._conn()
            conn.execute("BEGIN")
        try:
            if pipelined:
                # psycopg's pipeline mode: statements go out without waiting for the answers
                # of the ones before, until an answer is read; the COMMIT goes with the last ones
                with conn.pipeline():
                    yield conn
                    conn.execute("COMMIT")
            else:
                yield conn
                conn.execute("COMMIT")
        except BaseException:
            try:
                if not self._is_broken(conn):
                    conn.execute("ROLLBACK")
            except psycopg.Error:
                self._forget(conn)  # the first error says what happened; start afresh next time
            raise

    def _append_write(self) -> Any:
        # a group commit in 5 round trips, whatever its size and its number of topics: BEGIN;
        # the append lock with the stored-keys lookup; the topics' seq; the inserts; the keys'
        # rows with the COMMIT
        return self._write(pipelined=True)

    def _insert_calls(self, rows: Sequence[Tuple[Any, ...]]) -> List[Tuple[str, Sequence[Any]]]:
        return [(_INSERT_MESSAGES, (_json_rows(rows),))] if rows else []

    def _keys_calls(self, rows: Sequence[Tuple[Any, ...]]) -> List[Tuple[str, Sequence[Any]]]:
        return [(_INSERT_KEYS, (_json_rows(rows),))] if rows else []

    def _batch(self, conn: Any, calls: Sequence[Tuple[str, Sequence[Any]]]) -> List[List[Any]]:
        cursors = [conn.execute(sql, params) for sql, params in calls]
        return [cursor.fetchall() for cursor in cursors]

    def _migration_lock(self, conn: Any) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))", (_MIGRATION_LOCK,))

    def _append_lock(self, conn: Any) -> None:
        # ids come from a sequence when the row is inserted, but transactions commit in their
        # own order: one append at a time per schema makes id order the commit order, so a
        # reader that has seen an id has seen every smaller one (history after=<id> skips nothing)
        conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))", (_APPEND_LOCK,))

    def _prune_lock(self, conn: Any) -> bool:
        # every node runs retention; one prunes at a time, the others skip that round
        return bool(conn.execute("SELECT pg_try_advisory_xact_lock(%s, hashtext(current_schema()))",
                                 (_PRUNE_LOCK,)).fetchone()[0])
