"""Benchmark: does one busy user slow everyone else? Another user's send latency on a real node,
unloaded and while one member floods.

For each store (SQLite, and PostgreSQL in a schema of its own on the test server), starts a
node with the default limits and fills the flooding member's department with PREFILL messages
(so that ``deptcast.history(limit=1000)`` returns full pages). PROBES calm users of another
department each send a message every 0.1 s, one call at a time, and every call's latency
(call to answer) is kept. One member keeps SESSIONS sessions open in a separate process.
A run alternates CYCLES times between

1. unloaded: the member's sessions are idle, for SECONDS seconds;
2. flood: each of them sends as fast as the node answers (rate-limited or not) and calls
   ``deptcast.history(limit=1000)`` as fast as it can, for SECONDS seconds.

Alternating short phases puts both conditions under the same background load (the machine
may be shared). Prints each run's p50/p99 per condition and the ranges over RUNS runs; the
goal is the calm users' p99 under the flood within 2x of their unloaded p99.

    .venv/bin/python bench/fairness.py [--store sqlite|postgres|both] [--runs 3] [--cycles 4]
                                       [--seconds 3] [--sessions 5] [--probes 2] [--prefill 2000]
                                       [--env DEPTCAST_X=VALUE ...]

The flooding sessions run in their own process (the calm users' clock must not wait for the
flooder's decoding); on a 2-core machine the node, the flooder and the probes share the
cores, as they would share a small server.
"""

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet import defer, reactor, task

from components.core.targets import SCOPE_DEPT, Target
from components.core.tokens import Identity, issue_token
from components.store import open_store
from tests.support.nodes import TEST_SECRET, Node
from tests.support.wamp import connect

FLOOD_DEPT = "flood"
CALM_DEPT = "calm"
PROBE_INTERVAL = 0.1


def sleep(seconds: float) -> defer.Deferred:
    return task.deferLater(reactor, seconds, lambda: None)


def percentile(values: List[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


# -- the flooder (its own process: ``fairness.py --flood URL SESSIONS``)


async def flood_session(client, until: float, counts: Dict[str, int]) -> None:
    async def sends() -> None:
        n = 0
        while time.monotonic() < until:
            n += 1
            try:
                await client.call("deptcast.send", FLOOD_DEPT, f"flood {n}")
                counts["sends accepted"] += 1
            except Exception as e:
                key = f"sends refused {getattr(e, 'error', type(e).__name__)}"
                counts[key] = counts.get(key, 0) + 1

    async def history() -> None:
        while time.monotonic() < until:
            try:
                page = await client.call("deptcast.history", limit=1000)
                counts["history answered"] += 1
                counts["history envelopes"] += len(page)
            except Exception as e:
                key = f"history refused {getattr(e, 'error', type(e).__name__)}"
                counts[key] = counts.get(key, 0) + 1
                await sleep(0.01)

    await defer.gatherResults([defer.ensureDeferred(sends()), defer.ensureDeferred(history())])


def flood_main(url: str, sessions: int) -> None:
    """Connect ``sessions`` sessions of the flooding member, say ``ready``, then for each line
    ``flood SECONDS`` on standard input flood for that long and print the counts (JSON)."""
    clients: List = []

    async def connect_all() -> None:
        for _ in range(sessions):
            clients.append(await connect(url, issue_token(TEST_SECRET, "mallory", FLOOD_DEPT)))
        print("ready", flush=True)

    async def flood(seconds: float) -> None:
        counts = {"sends accepted": 0, "history answered": 0, "history envelopes": 0}
        until = time.monotonic() + seconds
        await defer.gatherResults([defer.ensureDeferred(flood_session(c, until, counts)) for c in clients])
        print(json.dumps(counts), flush=True)

    def read_commands() -> None:
        for line in sys.stdin:
            words = line.split()
            if words[:1] == ["flood"]:
                reactor.callFromThread(lambda s=float(words[1]): defer.ensureDeferred(flood(s)))
        reactor.callFromThread(reactor.stop)

    reactor.callWhenRunning(lambda: defer.ensureDeferred(connect_all()).addCallback(
        lambda _: reactor.callInThread(read_commands)))
    reactor.run()


# -- the probes and the runs


async def probe(client, tag: str, until: float, latencies: List[float], errors: List[str]) -> None:
    n = 0
    while time.monotonic() < until:
        n += 1
        started = time.perf_counter()
        try:
            await client.call("deptcast.send", CALM_DEPT, f"{tag} {n}")
            latencies.append((time.perf_counter() - started) * 1000)
        except Exception as e:
            errors.append(getattr(e, "error", type(e).__name__))
        await sleep(max(0.0, PROBE_INTERVAL - (time.perf_counter() - started)))


async def phase(probes, seconds: float, tag: str, latencies: List[float], errors: List[str]) -> None:
    until = time.monotonic() + seconds
    await defer.gatherResults([defer.ensureDeferred(probe(c, f"{tag} {i}", until, latencies, errors))
                               for i, c in enumerate(probes)])


def summary(latencies: List[float], errors: List[str]) -> Dict[str, object]:
    return {"p50": statistics.median(latencies), "p99": percentile(latencies, 0.99), "n": len(latencies),
            "errors": errors}


class Flooder:
    """The flooding member's process."""

    def __init__(self, url: str, sessions: int) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--flood", url, str(sessions)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"the flooder did not start: {line!r}")

    def start(self, seconds: float) -> None:
        self.proc.stdin.write(f"flood {seconds}\n")
        self.proc.stdin.flush()

    def counts(self) -> Dict[str, int]:
        """The last flood's counts (blocks until it has ended)."""
        return json.loads(self.proc.stdout.readline())

    def stop(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def bench_store(args, kind: str, db: str, node_dir: Path) -> Dict[str, List[Dict[str, object]]]:
    store = open_store(db)
    store.migrate()
    target, sender = Target(SCOPE_DEPT, FLOOD_DEPT, dept=FLOOD_DEPT), Identity("writer", FLOOD_DEPT)
    for i in range(args.prefill):
        store.append(target, sender, f"old message {i} " + "x" * 100, int(time.time() * 1000))
    store.close()
    env = dict(kv.split("=", 1) for kv in args.env)
    if kind == "postgres":
        env["DEPTCAST_DB"] = db
    node = Node(node_dir, name=f"fair-{kind}", env=env)
    node.start()
    results: Dict[str, List[Dict[str, object]]] = {"unloaded": [], "flood": []}
    flooder = None
    try:
        probes = [await connect(node.url, issue_token(TEST_SECRET, f"calm{i}", CALM_DEPT)) for i in range(args.probes)]
        flooder = Flooder(node.url, args.sessions)
        await phase(probes, 1.0, "warm-up", [], [])
        for run in range(args.runs):
            calm: List[float] = []
            flooded: List[float] = []
            errors: Dict[str, List[str]] = {"unloaded": [], "flood": []}
            counts: Dict[str, int] = {}
            for cycle in range(args.cycles):
                await phase(probes, args.seconds, f"unloaded {run}.{cycle}", calm, errors["unloaded"])
                flooder.start(args.seconds + 0.3)
                await sleep(0.3)  # the flood is on
                await phase(probes, args.seconds, f"flood {run}.{cycle}", flooded, errors["flood"])
                for k, v in flooder.counts().items():  # it ended just after the phase
                    counts[k] = counts.get(k, 0) + v
            unloaded, loaded = summary(calm, errors["unloaded"]), summary(flooded, errors["flood"])
            loaded["flooder"] = counts
            results["unloaded"].append(unloaded)
            results["flood"].append(loaded)
            print(f"  {kind} run {run + 1}: unloaded p50 {unloaded['p50']:.1f} ms p99 {unloaded['p99']:.1f} ms "
                  f"(n={unloaded['n']}) | flood p50 {loaded['p50']:.1f} ms p99 {loaded['p99']:.1f} ms "
                  f"(n={loaded['n']}, refused {len(loaded['errors'])}) | flooder {counts}", flush=True)
        for c in probes:
            await c.close()
    finally:
        if flooder is not None:
            flooder.stop()
        node.stop()
        shutil.rmtree(node_dir, ignore_errors=True)
    return results


def span(values: List[float]) -> str:
    return f"{min(values):.1f}-{max(values):.1f}"


def report(kind: str, results: Dict[str, List[Dict[str, object]]]) -> None:
    un, fl = results["unloaded"], results["flood"]
    ratios = [f["p99"] / u["p99"] for u, f in zip(un, fl)]
    print(f"{kind}: calm users' send latency over {len(un)} runs (ranges)")
    print(f"  unloaded: p50 {span([r['p50'] for r in un])} ms, p99 {span([r['p99'] for r in un])} ms")
    print(f"  flood:    p50 {span([r['p50'] for r in fl])} ms, p99 {span([r['p99'] for r in fl])} ms")
    verdict = "met" if max(ratios) <= 2.0 else "NOT met"
    print(f"  p99 flood / unloaded: {span(ratios)}x (goal <= 2x: {verdict})")
    errors = sum(len(r["errors"]) for r in un + fl)
    print(f"  calm sends refused: {errors}")


async def run(args) -> None:
    kinds = ["sqlite", "postgres"] if args.store == "both" else [args.store]
    for kind in kinds:
        node_dir = Path(tempfile.mkdtemp(prefix=f"deptcast-fairness-{kind}-"))
        print(f"{kind}: node in {node_dir}; {args.prefill} messages in the flooding member's department", flush=True)
        if kind == "postgres":
            from tests.support.pg import pg_schema
            with pg_schema("deptcast_fairness") as url:
                results = await bench_store(args, kind, url, node_dir)
        else:
            results = await bench_store(args, kind, str(node_dir / "deptcast.sqlite3"), node_dir)
        report(kind, results)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--flood":
        flood_main(sys.argv[2], int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cycles", type=int, default=4, help="unloaded/flood alternations per run")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per phase")
    parser.add_argument("--sessions", type=int, default=5, help="the flooding member's sessions")
    parser.add_argument("--probes", type=int, default=2, help="calm users, each sending every 0.1 s")
    parser.add_argument("--prefill", type=int, default=2000)
    parser.add_argument("--env", action="append", default=[], metavar="DEPTCAST_X=VALUE",
                        help="a setting for the node (repeatable), e.g. DEPTCAST_HISTORY_LIMIT=200")
    args = parser.parse_args()
    status: List[Optional[BaseException]] = []

    def done(result):
        status.append(result if isinstance(result, BaseException) else None)
        if reactor.running:
            reactor.stop()

    def go():
        d = defer.ensureDeferred(run(args))
        d.addErrback(lambda f: (f.printTraceback(), f.value)[1])
        d.addBoth(done)
    reactor.callWhenRunning(go)
    reactor.run()
    sys.exit(1 if status and status[0] is not None else 0)


if __name__ == "__main__":
    main()
