"""What receipts cost: a notice stream to 500 receivers of one department, with and without
every receiver acknowledging ``delivered`` (and one in ten ``seen``), side by side.

    scripts/bench receipts [--subscribers 500] [--rate 20] [--seconds 20] [--runs 2] [--db sqlite|postgres]

Starts a fresh 1-node deptcast (SQLite in its directory, or a PostgreSQL schema of its own;
rate limit off) through its outside interfaces (``harness.py``) and runs the load generator's
``acks`` mode: SUBSCRIBERS WAMP sessions of one department, a publisher sending RATE notices a
second to that department. Each run measures both cases, alternating (without, with, ...), on
the same node: deliveries/s, send-to-delivery p50 and p99, the node's CPU per delivery (the
router worker and the controller, read from ``/proc`` over the measured window; with
PostgreSQL, its backends too), and the receipt rows and bulk write transactions the store took
per second. Results go to ``bench/results/receipts-<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import sqlite3
import sys
import time
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cpu_profile as profile
import harness as h

DEPT = "bench"


def store_calls(node: h.DeptcastNode) -> Dict[str, float]:
    """How many times each store operation ran so far (the node's /metrics)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{node.port}/metrics", timeout=60).read().decode()
    out = {}
    for m in re.finditer(r'^deptcast_store_operation_seconds_count\{operation="([a-z_]+)"\} ([0-9.e+]+)$', text, re.M):
        out[m.group(1)] = float(m.group(2))
    return out


def receipt_rows(db: str, pg: Optional[h.PgSchema]) -> int:
    if pg is not None:
        return int(pg.psql(f"SELECT count(*) FROM {pg.name}.receipts").strip() or 0)
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM receipts").fetchone()[0]


def one_case(node, pg, db, secret, workdir: Path, args, ack: bool) -> dict:
    subscribers = [{"url": node.url, "authid": f"r{i}", "token": h.mint(secret, f"r{i}", DEPT), "dept": DEPT,
                    "topics": [h.DEPT_TOPIC]} for i in range(args.subscribers)]
    sender = {"url": node.url, "authid": "sender", "token": h.mint(secret, "sender", "hq", "publisher"),
              "dept": "hq"}
    config = {"mode": "acks", "subscribers": subscribers, "sender": sender, "to": DEPT, "rate": args.rate,
              "seconds": args.seconds, "warmup": args.warmup, "ack": ack, "seenEvery": 10, "size": 100}
    marks, result, profiling = {}, None, []
    for event in h.Loadgen(config, workdir).events():
        if event["event"] in ("window_start", "window_end"):
            marks[event["event"]] = (node.cpu(), pg_cpu(pg), store_calls(node), receipt_rows(db, pg), time.monotonic())
            if event["event"] == "window_start" and args.profile:
                for pid in node.pids():
                    if h.process_label(pid) == "router":
                        raw = workdir / f"profile-{pid}-{'acks' if ack else 'plain'}-{time.time():.0f}.raw"
                        profiling.append((raw, profile.record(pid, args.seconds - 1, raw)))
        elif event["event"] == "acks_result":
            result = event
    assert result is not None
    for raw, proc in profiling:
        proc.wait(60)
        result["profile"] = profile.summarize(raw)
        print("\n".join(profile.lines(result["profile"], top=25)), flush=True)
    (c0, p0, s0, r0, t0), (c1, p1, s1, r1, t1) = marks["window_start"], marks["window_end"]
    seconds = t1 - t0
    cpu = c0.seconds_until(c1) + (p1 - p0)
    result.update({
        "nodeCpuSeconds": cpu, "cpuUsPerDelivery": cpu * 1e6 / max(1, result["delivered"]),
        "receiptRowsPerSec": (r1 - r0) / seconds,
        "receiptWritesPerSec": (s1.get("add_receipts", 0) - s0.get("add_receipts", 0)) / seconds,
        "rosterWritesPerSec": (s1.get("roster_touch", 0) - s0.get("roster_touch", 0)) / seconds,
        "appendsPerSec": (s1.get("append", 0) - s0.get("append", 0)) / seconds,
    })
    return result


def pg_cpu(pg: Optional[h.PgSchema]) -> float:
    """CPU seconds of the PostgreSQL server's backends so far (0 without PostgreSQL)."""
    if pg is None:
        return 0.0
    pids = pg.backend_pids()
    ticks = h.cpu_ticks(pids)
    return sum(ticks.values()) / 100.0


def line(r: dict) -> str:
    return (f"{'with acks   ' if r['ack'] else 'without acks'}: {r['deliveredPerSec']:8,.0f} deliveries/s, "
            f"p50 {r['p50Ms']} ms, p99 {r['p99Ms']} ms, {r['cpuUsPerDelivery']:.1f} µs CPU per delivery; "
            f"store: {r['appendsPerSec']:.0f} appends/s, {r['receiptWritesPerSec']:.1f} receipt writes/s "
            f"({r['receiptRowsPerSec']:,.0f} rows/s), {r['rosterWritesPerSec']:.1f} roster writes/s; "
            f"{r['ackCallsPerSec']:.0f} ack calls/s (errors {r['ackErrors'] or 0}, "
            f"send errors {r['sendErrors'] or 0}); "
            f"load generator {r['loadgenCpuPct']:.0f}%")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=h.REPO, help="the deptcast checkout to measure")
    parser.add_argument("--subscribers", type=int, default=500)
    parser.add_argument("--rate", type=float, default=20, help="notices per second")
    parser.add_argument("--seconds", type=float, default=20, help="measured seconds per case")
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--runs", type=int, default=2, help="pairs of cases (without, with)")
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--profile", action="store_true", help="py-spy the router worker in each window")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    h.stop_cleanly_on_signals()
    args.root = args.root.resolve()
    workdir = h.Workdir(keep=args.keep)
    secret = secrets.token_urlsafe(48)
    machine = h.machine_info(args.root)
    state = h.machine_state()
    print(f"deptcast {machine['deptcast_commit']} at {args.root}; {state['date']}, loadavg {state['loadavg']}",
          flush=True)
    pg = h.PgSchema(h.PG_URL, f"bench_receipts_{secrets.token_hex(3)}") if args.db == "postgres" else None
    db = pg.url if pg is not None else str(workdir.path / "node" / "bench.sqlite3")
    node = h.start_single_node(args.root, workdir.path, secret, extra_env={"DEPTCAST_DB": db})
    results: List[dict] = []
    try:
        h.wait_ready(node, secret, workdir.path)
        for run in range(args.runs):
            for ack in (False, True):
                r = one_case(node, pg, db, secret, workdir.path, args, ack)
                results.append(r)
                print(f"run {run + 1}, " + line(r), flush=True)
    finally:
        h.close_loadgens()
        node.stop()
        if pg is not None:
            pg.drop()
        workdir.cleanup()
    for ack in (False, True):
        mine = [r for r in results if r["ack"] == ack]
        print(f"{'with' if ack else 'without'} acks over {len(mine)} runs: "
              f"p50 {min(r['p50Ms'] for r in mine)}-{max(r['p50Ms'] for r in mine)} ms, "
              f"p99 {min(r['p99Ms'] for r in mine)}-{max(r['p99Ms'] for r in mine)} ms, "
              f"CPU {min(r['cpuUsPerDelivery'] for r in mine):.1f}-{max(r['cpuUsPerDelivery'] for r in mine):.1f} "
              f"µs per delivery")
    out = h.BENCH / "results" / f"receipts-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "state": state, "params": {
        k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, "results": results}, indent=1))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
