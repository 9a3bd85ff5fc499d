"""Benchmark: a page of ``deptcast.history`` at 1M stored messages, for a reader whose
department holds very few of them and for one whose department holds most.

Fills a store of each kind (SQLite in a temp file; PostgreSQL in a schema of its own on the
test server) with ROWS messages in one transaction (``executemany`` / ``COPY``): 90% to the
department ``big``, 1% to ``All``, 40 to the department ``small``, a few direct messages to
each reader, the rest spread over 50 other departments, in random order (so every topic's
rows are scattered over the table, as in a real one). Then times the store's ``history``
call (query and envelopes, what a node's reader thread does) for a page of 100, REPEAT
times per case, for both readers:

- ``after``: the oldest page; and the page after an id half-way through the table;
- ``latest``: the newest page;
- ``positions``: from seq 0 on the reader's three topics; and resuming near the end (50
  behind on each topic).

Prints min / median / max milliseconds per case (goal: under 5 ms whatever the reader's
share of the table) and the query plans (``EXPLAIN QUERY PLAN``; PostgreSQL's
``EXPLAIN (ANALYZE, BUFFERS)``) that show each topic read through its own index range.
The SQLite file and the PostgreSQL schema are removed afterwards.

    .venv/bin/python bench/history_index.py [--store sqlite|postgres|both] [--rows 1000000] [--repeat 30]
"""

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from components.core.history import HistoryRequest
from components.core.names import ALL, client_topics, dept_topic, user_topic
from components.store import open_store
from components.store.sql import history_query

PAGE = 100
READERS = {"small": ("small", "sam"), "big": ("big", "bea")}
COLUMNS = ("scope", "target", "target_dept", "target_user", "sender", "sender_dept", "message", "ts", "seq", "topic")


def plan_rows(rows: int, seed: int = 7) -> List[Tuple]:
    """The rows to store, in the order they are inserted (their ids)."""
    rng = random.Random(seed)
    counts: Dict[Tuple[str, str, str, str], int] = {}
    specs: List[Tuple[str, str, str, str]] = []  # (scope, target, dept, user)
    specs += [("dept", "big", "big", "")] * int(rows * 0.90)
    specs += [("all", ALL, "", "")] * int(rows * 0.01)
    specs += [("dept", "small", "small", "")] * 40
    specs += [("user", "small_sam", "small", "sam")] * 10
    specs += [("user", "big_bea", "big", "bea")] * 100
    others = rows - len(specs)
    specs += [("dept", f"d{i % 50}", f"d{i % 50}", "") for i in range(others)]
    rng.shuffle(specs)
    out = []
    ts = 1_790_000_000_000
    for n, (scope, target, dept, user) in enumerate(specs):
        if scope == "all":
            topic = "deptcast.all"
        elif scope == "dept":
            topic = dept_topic(dept)
        else:
            topic = user_topic(dept, user)
        seq = counts[(scope, target, dept, user)] = counts.get((scope, target, dept, user), 0) + 1
        out.append((scope, target, dept or None, user or None, "writer", "ops", f"notice number {n} for {target}",
                    ts + n, seq, topic))
    return out


def fill_sqlite(path: str, rows: List[Tuple]) -> None:
    import sqlite3
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN")
    db.executemany(f"INSERT INTO messages ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})", rows)
    db.execute("INSERT INTO topic_seq (topic, seq) SELECT topic, max(seq) FROM messages GROUP BY topic")
    db.execute("COMMIT")
    db.execute("ANALYZE")
    db.close()


def fill_postgres(url: str, rows: List[Tuple]) -> None:
    import psycopg  # a connection of its own: the store's carry statement deadlines
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.transaction():
            with conn.cursor().copy(f"COPY messages ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            conn.execute("INSERT INTO topic_seq (topic, seq) SELECT topic, max(seq) FROM messages GROUP BY topic")
        conn.execute("ANALYZE messages")


def cases(rows: List[Tuple], reader: Tuple[str, str]) -> Dict[str, HistoryRequest]:
    dept, user = reader
    topics = client_topics(dept, user)
    top = {t: 0 for t in topics}
    for r in rows:
        if r[9] in top:
            top[r[9]] = max(top[r[9]], r[8])
    half = len(rows) // 2
    return {
        "after: oldest page": HistoryRequest(topics, 0, None, PAGE),
        "after: id half-way": HistoryRequest(topics, half, None, PAGE),
        "latest": HistoryRequest(topics, 0, None, PAGE, latest=True),
        "positions: from 0": HistoryRequest(topics, 0, {t: 0 for t in topics}, PAGE),
        "positions: 50 behind": HistoryRequest(topics, 0, {t: max(0, s - 50) for t, s in top.items()}, PAGE),
    }


def timed(fn: Callable[[], Any], repeat: int) -> Tuple[List[float], Any]:
    fn()  # warm: the connection, the statement cache
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - started) * 1000)
    return times, result


def explain(kind: str, store: Any, request: HistoryRequest) -> str:
    p = store.dialect.placeholder
    if request.positions is not None:
        mode, arms = "positions", sorted(request.positions.items())
    else:
        mode, arms = ("latest" if request.latest else "after"), [(t, request.after) for t in request.topics]
    sql = history_query(p, len(arms), mode)
    params: List[Any] = []
    for topic, bound in arms:
        params += [topic, bound, request.limit]
    params.append(request.limit)
    conn = store._conn()
    if kind == "sqlite":
        return "\n".join(f"    {row[3]}" for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall())
    lines = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}", params).fetchall()
    return "\n".join(f"    {row[0]}" for row in lines)


def bench(kind: str, db: str, args) -> None:
    rows = plan_rows(args.rows)
    store = open_store(db)
    store.migrate()
    started = time.perf_counter()
    (fill_sqlite if kind == "sqlite" else fill_postgres)(db, rows)
    print(f"{kind}: {len(rows):,} messages stored in {time.perf_counter() - started:.1f} s "
          f"(department big {sum(1 for r in rows if r[9] == 'deptcast.dept.big'):,}, "
          f"small {sum(1 for r in rows if r[9] == 'deptcast.dept.small')}, "
          f"All {sum(1 for r in rows if r[9] == 'deptcast.all'):,})", flush=True)
    try:
        print(f"  page of {PAGE}, {args.repeat} calls each: min / median / max ms (rows returned)")
        worst = 0.0
        for name, reader in READERS.items():
            for case, request in cases(rows, reader).items():
                times, result = timed(lambda: store.history(request), args.repeat)  # noqa: B023 (timed calls it at once)
                worst = max(worst, statistics.median(times))
                print(f"  {name:5} reader, {case:22}: {min(times):6.2f} / {statistics.median(times):6.2f} / "
                      f"{max(times):6.2f}  ({len(result)})", flush=True)
        print(f"  slowest median {worst:.2f} ms (goal under 5 ms: {'met' if worst < 5 else 'NOT met'})")
        print(f"  query plans, small reader ({kind}):")
        for case, request in cases(rows, READERS["small"]).items():
            if case in ("after: id half-way", "latest", "positions: 50 behind"):
                print(f"  - {case}\n{explain(kind, store, request)}")
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    if args.store in ("sqlite", "both"):
        tmp = Path(tempfile.mkdtemp(prefix="deptcast-history-index-"))
        try:
            bench("sqlite", str(tmp / "history.sqlite3"), args)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.store in ("postgres", "both"):
        from tests.support.pg import pg_schema
        with pg_schema("deptcast_history_index") as url:
            bench("postgres", url, args)


if __name__ == "__main__":
    main()
