"""Benchmark: retention removing 1M old messages while sends go on; database size and the
send path's store write latency, with and without pruning, in the same run.

Fills a store with ROWS messages older than the retention (spread over TOPICS topics), then
appends new messages at RATE per second through the node's own :class:`ThreadedStore` (the
store write of every ``deptcast.send``) for BASELINE seconds without pruning, then the same
while the node's :class:`~components.service.retention.Pruner` (``DEPTCAST_RETENTION_DAYS``)
removes every old row in its batches. Reports the append latency of both phases, how long the
pruning took, and the database's size: full, after pruning, and after as many new messages
again as a tenth of the rows (SQLite reuses the freed pages at once; PostgreSQL once
(auto)vacuum has passed).

    .venv/bin/python bench/retention.py [--db PATH|postgresql://...] [--rows 1000000] [--rate 200]

Default: SQLite in a temp directory. The writes share the machine with this process's reactor:
compare the two phases of one run, not runs on different machines.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet import defer, task

from components.core.retention import DAY_MS
from components.core.settings import load_settings
from components.core.targets import SCOPE_DEPT, Target
from components.core.tokens import Identity
from components.service.retention import BATCH, PAUSE, Pruner
from components.service.slot import Slot
from components.store import open_store
from components.store.threaded import ThreadedStore

SENDER = Identity("bench", "ops", "publisher")
MESSAGE = "x" * 100


def fill(store, rows: int, topics: int, ts: int) -> None:
    """Insert ``rows`` old messages straight into the tables (seq numbered per topic)."""
    conn = store._conn()
    per_topic = [0] * topics
    p = store.dialect.placeholder
    sql = ("INSERT INTO messages (scope, target, target_dept, target_user, sender, sender_dept, message, ts, seq, "
           f"topic) VALUES ({', '.join([p] * 10)})")
    chunk = 20_000
    for start in range(0, rows, chunk):
        batch = []
        for i in range(start, min(rows, start + chunk)):
            t = i % topics
            per_topic[t] += 1
            batch.append(("dept", f"d{t}", f"d{t}", None, "bench", "ops", MESSAGE, ts + i, per_topic[t],
                          f"deptcast.dept.d{t}"))
        with store._write() as c:
            if hasattr(c, "executemany"):
                c.executemany(sql, batch)
            else:
                with c.cursor() as cur:
                    cur.executemany(sql, batch)
    with store._write() as c:
        for t, seq in enumerate(per_topic):
            c.execute(f"INSERT INTO topic_seq (topic, seq) VALUES ({p}, {p})", (f"deptcast.dept.d{t}", seq))
    del conn


def size_bytes(store, db: str) -> int:
    if db.startswith("postgresql://"):
        row = store._conn().execute("SELECT pg_total_relation_size('messages')").fetchone()
        return int(row[0])
    return sum(os.path.getsize(db + suffix) for suffix in ("", "-wal") if os.path.exists(db + suffix))


def mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def summary(latencies) -> str:
    ms = sorted(x * 1000 for x in latencies)
    return (f"{len(ms)} appends: p50 {statistics.median(ms):.1f} ms, p99 {ms[int(len(ms) * 0.99)]:.1f} ms, "
            f"max {ms[-1]:.1f} ms")


@defer.inlineCallbacks
def appends(reactor, threaded: ThreadedStore, rate: float, until, latencies):
    """Append at ``rate`` per second until ``until()`` is true."""
    target = Target(SCOPE_DEPT, "live", dept="live")
    interval = 1.0 / rate
    next_at = reactor.seconds()
    while not until():
        began = time.perf_counter()
        yield threaded.append(target, SENDER, MESSAGE, int(time.time() * 1000))
        latencies.append(time.perf_counter() - began)
        next_at += interval
        yield task.deferLater(reactor, max(0.0, next_at - reactor.seconds()), lambda: None)


class _Service:
    store_ready = True

    def __init__(self, store):
        self.store = store


@defer.inlineCallbacks
def main(reactor, args):
    tmp = None if args.db else tempfile.TemporaryDirectory(prefix="deptcast-retention-")
    db = args.db or str(Path(tmp.name) / "bench.sqlite3")
    store = open_store(db)
    store.migrate()
    old_ts = int(time.time() * 1000) - 100 * DAY_MS
    started = time.perf_counter()
    fill(store, args.rows, args.topics, old_ts)
    print(f"store: {'postgresql' if db.startswith('postgresql://') else 'sqlite ' + db}; "
          f"{args.rows} old messages of {len(MESSAGE)} bytes on {args.topics} topics written in "
          f"{time.perf_counter() - started:.1f} s; size {mb(size_bytes(store, db))}", flush=True)

    threaded = ThreadedStore(store, reactor, writers=4 if db.startswith("postgresql://") else 1,
                             readers=2, timeout=5.0, unavailable_errors=store.unavailable_errors)
    baseline = []
    end = reactor.seconds() + args.baseline
    yield appends(reactor, threaded, args.rate, lambda: reactor.seconds() > end, baseline)
    print(f"without pruning, {args.rate:g}/s for {args.baseline:g} s: {summary(baseline)}", flush=True)

    env = {"DEPTCAST_JWT_SECRET": "b" * 40, "DEPTCAST_RETENTION_DAYS": "30"}
    settings = load_settings(Path(tempfile.gettempdir()), env)
    slot = Slot(reactor, "service")
    slot.set(_Service(threaded))
    pruner = Pruner(settings, slot, reactor, batch=args.batch, pause=args.pause)
    done = {"removed": 0, "finished": False}

    @defer.inlineCallbacks
    def prune_all():
        while True:
            n = yield pruner.run_once()
            done["removed"] += n
            if n == 0:
                break
        done["finished"] = True

    during = []
    prune_started = reactor.seconds()
    pruning = prune_all()
    yield appends(reactor, threaded, args.rate, lambda: done["finished"], during)
    yield pruning
    took = reactor.seconds() - prune_started
    print(f"while pruning (batches of {args.batch}, {args.pause * 1000:g} ms apart): {summary(during)}", flush=True)
    print(f"pruned {done['removed']} messages in {took:.1f} s ({done['removed'] / took:.0f} /s); "
          f"size after {mb(size_bytes(store, db))}", flush=True)

    refill = args.rows // 10
    fill_ts = int(time.time() * 1000)
    with store._write() as c:
        c.execute("DELETE FROM topic_seq WHERE topic LIKE 'deptcast.dept.d%'")
    fill(store, refill, args.topics, fill_ts)
    print(f"after {refill} new messages: size {mb(size_bytes(store, db))}", flush=True)
    threaded.close()
    if tmp is not None:
        yield task.deferLater(reactor, 0.5, lambda: None)  # the store's threads close their connections
        tmp.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", help="SQLite file or postgresql:// URL (default: SQLite in a temp directory)")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--topics", type=int, default=50)
    parser.add_argument("--rate", type=float, default=200.0, help="appends per second in both phases")
    parser.add_argument("--baseline", type=float, default=20.0, help="seconds of appends without pruning")
    parser.add_argument("--batch", type=int, default=BATCH)
    parser.add_argument("--pause", type=float, default=PAUSE)
    task.react(main, [parser.parse_args()])
