"""Failover: N WAMP clients on node A of a 2-node cluster; A is killed; the curve of clients
back on node B (resubscribed and caught up from history) against time, and nothing missed.

    scripts/bench failover [--clients 2000] [--runs 2] [--jitter-ms 2000] [--rate 1] [--procs K]
                           [--max-authenticating N]

Starts a 2-node cluster (``cluster init``, PostgreSQL, as ``compare.py``'s cluster) through its
outside interfaces (``harness.py``), then the load generator's failover step
(``loadgen/failover.js``): CLIENTS members of one department connect to node A and subscribe to
their department; a publisher on node B sends RATE notices a second to it; node A is killed
(SIGKILL of its process group: no goodbye, as a crash or a power cut); each client waits a random
delay up to JITTER_MS (browsers spread their retries), connects to B (a 503 from a node busy
authenticating others: again after its ``Retry-After``, spread by ±50 %), subscribes again and
reads what it missed with ``deptcast.history(positions=...)``, page by page until the history
reaches the first notice that came to it live on B (or a page is empty). Reported per run: when the first, half,
90%, 99% and the last client were back (seconds after the kill), the curve in 1-second steps, the
notices the sender had accepted and how many client copies were missing after the drain (must
be 0) and duplicated, and the CPU node B used from the kill until the last was back. Results go
to ``bench/results/failover-<time>.json``.

The open-file limit is raised for this process and its children as far as the hard limit allows
(further only where the process may raise the hard limit: CAP_SYS_RESOURCE). Where the hard
limit is 20,000, one node cannot hold 20,000 clients (each is a socket of its router worker,
beside its own files), nor one load generator: measure what the machine holds and say so.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator, List

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cpu_profile as profile
import harness as h
import stages

DEPT = "bench"
HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "loadgen" / "failover.js"


def raise_files(want: int) -> int:
    """Raise this process's open-file limits (hard too, as root) to ``want``; answers the soft
    limit in force (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Step:
    """The failover load generator with one config: its events, and lines to its stdin."""

    def __init__(self, config: dict, workdir: Path) -> None:
        fd, path = tempfile.mkstemp(prefix="failover-", suffix=".json", dir=str(workdir))
        with os.fdopen(fd, "w") as f:
            json.dump(config, f)
        self.err = Path(path).with_suffix(".stderr")
        with open(self.err, "wb") as err:
            self.proc = subprocess.Popen([shutil.which("node") or "node", str(SCRIPT), path], stdout=subprocess.PIPE,
                                         stdin=subprocess.PIPE, stderr=err, text=True, bufsize=1,
                                         start_new_session=True)

    def events(self) -> Iterator[dict]:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip():
                event = json.loads(line)
                if event.get("event") == "error":
                    raise RuntimeError(f"{event['error']}: {self.err.read_text(errors='replace')[-2000:]}")
                yield event

    def tell(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            h.stop_process(self.proc, timeout=5)


def cpu_of(node: h.DeptcastNode, cluster: h.DeptcastCluster) -> h.CpuSample:
    """The CPU of a node and of the database's backends so far."""
    return h.CpuSample(h.cpu_ticks(node.pids() + cluster.schema.backend_pids()), time.monotonic())


class Steps:
    """Several failover load generators (the clients split over processes: one process may
    hold at most the hard open-file limit of sockets, and one Node.js thread is slow to drive
    tens of thousands), their events merged: ``ready``/``sending`` once all have said it, ``back``
    summed, one ``result`` with the curves joined and the counts summed."""

    def __init__(self, configs: List[dict], workdir: Path) -> None:
        self.steps = [Step(c, workdir) for c in configs]

    def events(self) -> Iterator[dict]:
        import queue
        import threading
        q: "queue.Queue" = queue.Queue()

        def pump(k: int, step: Step) -> None:
            try:
                for event in step.events():
                    q.put((k, event))
            except Exception as exc:  # passed to the reader
                q.put((k, {"event": "error", "exc": exc}))
            q.put((k, None))
        for k, step in enumerate(self.steps):
            threading.Thread(target=pump, args=(k, step), daemon=True).start()
        n = len(self.steps)
        seen: dict = {}
        backs = [0] * n
        results: List[dict] = []
        ended = 0
        while ended < n:
            k, event = q.get()
            if event is None:
                ended += 1
                continue
            kind = event["event"]
            if kind == "error":
                raise event["exc"]
            if kind in ("ready", "sending"):
                seen.setdefault(kind, []).append(event)
                if len(seen[kind]) == n:
                    merged = dict(event)
                    if kind == "ready":
                        merged["clients"] = sum(e["clients"] for e in seen[kind])
                        merged["seconds"] = max(e["seconds"] for e in seen[kind])
                    yield merged
            elif kind == "back":
                backs[k] = event["back"]
                if k == 0:
                    yield {"event": "back", "back": sum(backs), "at": event["at"]}
            elif kind == "result":
                results.append(event)
        merged = {"event": "result", "backSeconds": sorted(t for r in results for t in r["backSeconds"]),
                  "killedUs": results[0]["killedUs"]}
        for key in ("clients", "back", "failures", "accepted", "sent", "sendErrors", "missing", "dups", "attempts",
                    "refused"):
            merged[key] = sum(r.get(key) or 0 for r in results)
        yield merged

    def tell(self, line: str) -> None:
        for step in self.steps:
            step.tell(line)

    def close(self) -> None:
        for step in self.steps:
            step.close()


def one_run(args, workdir: Path) -> dict:
    configure = None
    if args.leave_out:
        from mesh import leave_out_patch

        def configure(node_dir: Path) -> None:
            leave_out_patch(node_dir, [p for p in args.leave_out.split(",") if p])
    env = {"DEPTCAST_MAX_AUTHENTICATING": str(args.max_authenticating)} if args.max_authenticating is not None else {}
    cluster = h.DeptcastCluster(args.root, workdir / f"cluster-{int(time.time() * 1000)}", args.pg,
                                configure=configure, extra_env=env)
    step = None
    try:
        for node in cluster.nodes:
            h.wait_ready(node, cluster.secret, workdir)
        a, b = cluster.nodes
        secret = cluster.secret
        sender = {"url": b.url, "authid": "sender", "token": h.mint(secret, "sender", "hq", "publisher")}
        h.wait_linked("wamp", {**sender, "dept": "hq"},
                      {"url": a.url, "authid": "linkprobe", "token": h.mint(secret, "linkprobe", DEPT), "dept": DEPT,
                       "topics": [h.DEPT_TOPIC]}, DEPT, workdir)
        clients = [{"authid": f"f{i}", "token": h.mint(secret, f"f{i}", DEPT)} for i in range(args.clients)]
        procs = max(1, args.procs)
        senders = [{**sender, "authid": f"sender{k}", "token": h.mint(secret, f"sender{k}", "hq", "publisher")}
                   for k in range(procs)]
        configs = [{"clients": clients[k::procs], "urls": [a.url, b.url], "topic": f"deptcast.dept.{DEPT}",
                    "sender": senders[k], "to": DEPT, "rate": args.rate / procs,
                    "concurrency": max(1, args.concurrency // procs), "jitterMs": args.jitter_ms,
                    "timeout": args.timeout, "drain": args.drain, "step": 7 + k} for k in range(procs)]
        step = Steps(configs, workdir)
        result: dict = {"procs": procs}
        killed_us = 0.0
        b_cpu0 = None
        profiling: list = []
        raws: List[Path] = []
        progress: List[list] = []
        for event in step.events():
            if event["event"] == "ready":
                print(f"    {event['clients']} clients on node A in {event['seconds']:.1f}s", flush=True)
                result["connectSeconds"] = event["seconds"]
                step.tell("go")
            elif event["event"] == "sending":
                time.sleep(args.before_kill)
                b_cpu0 = cpu_of(b, cluster)
                killed_us = time.monotonic_ns() / 1000
                os.killpg(a.proc.pid, signal.SIGKILL)
                if args.profile:
                    routers = [pid for pid in b.pids() if h.process_label(pid) == "router"]
                    raws = [workdir / f"profile-failover-{pid}-{time.time():.0f}.raw" for pid in routers]
                    profiling = [profile.record(pid, args.profile, raw) for pid, raw in zip(routers, raws)]
                step.tell(f"killed {killed_us:.0f}")
                print("    node A killed", flush=True)
            elif event["event"] == "back":
                progress.append([event["at"], event["back"]])
                if killed_us and len(progress) % 5 == 0:
                    print(f"    {event['back']} back after {(event['at'] - killed_us) / 1e6:.0f} s", flush=True)
            elif event["event"] == "result":
                result.update(event)
                b_cpu1 = cpu_of(b, cluster)
                result["nodeBCpuSeconds"] = b_cpu0.seconds_until(b_cpu1) if b_cpu0 else None
        for proc in profiling:
            proc.wait(timeout=args.profile + 60)
        if raws and all(r.exists() for r in raws):
            result["profile"] = {"summary": profile.summarize(raws[0]), "stages": stages.shares(raws)}
            print("\n".join(profile.lines(result["profile"]["summary"])))
            print("\n".join(stages.lines(result["profile"]["stages"])), flush=True)
        curve = result.get("backSeconds") or []
        n = result.get("clients") or args.clients

        def at(q: float):
            k = int(q * n + 0.999999) - 1
            return round(curve[k], 2) if 0 <= k < len(curve) else None
        result["firstBack"] = round(curve[0], 2) if curve else None
        result["p50Back"], result["p90Back"], result["p99Back"] = at(0.5), at(0.9), at(0.99)
        result["allBack"] = round(curve[-1], 2) if len(curve) == n else None
        result["perSecond"] = [sum(1 for t in curve if t <= s) for s in range(0, int(curve[-1]) + 2)] if curve else []
        del result["backSeconds"]
        result["backSecondsSample"] = curve[:: max(1, len(curve) // 50)]
        return result
    finally:
        if step is not None:
            step.close()
        cluster.stop()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=h.REPO, help="the deptcast checkout to measure")
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--rate", type=float, default=1, help="notices per second to the department")
    parser.add_argument("--jitter-ms", type=float, default=2000, help="each client's random delay before retrying")
    parser.add_argument("--concurrency", type=int, default=200, help="clients connecting at once to node A")
    parser.add_argument("--procs", type=int, default=1,
                        help="load generator processes the clients are split over (each with its own sender)")
    parser.add_argument("--before-kill", type=float, default=3, help="seconds of sending before the kill")
    parser.add_argument("--timeout", type=float, default=180, help="longest wait for the clients to come back")
    parser.add_argument("--drain", type=float, default=20)
    parser.add_argument("--pg", default=h.PG_URL)
    parser.add_argument("--profile", type=int, default=0, metavar="SECONDS",
                        help="py-spy node B's router worker for SECONDS from the kill, and print where it goes")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--leave-out", default="", metavar="PATCHES",
                        help="comma-separated upstream patches the nodes leave out (their config's leave_out)")
    parser.add_argument("--max-authenticating", type=int, default=None, metavar="N",
                        help="the nodes' DEPTCAST_MAX_AUTHENTICATING (default: the node's own default; a checkout "
                             "without the setting ignores it)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (node dirs, logs)")
    args = parser.parse_args(argv)
    files = raise_files(4 * args.clients + 1000)
    h.stop_cleanly_on_signals()
    print(f"deptcast at {args.root}; {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, "
          f"loadavg {os.getloadavg()}, open files {files}", flush=True)
    runs = []
    with tempfile.TemporaryDirectory(prefix="deptcast-failover-") as tmp:
        if args.keep:
            tmp = tempfile.mkdtemp(prefix="deptcast-failover-kept-")
            print(f"work directory (kept): {tmp}", flush=True)
        for i in range(args.runs):
            r = one_run(args, Path(tmp))
            runs.append(r)
            print(f"run {i + 1}: {r.get('back')}/{r.get('clients')} back; first {r['firstBack']} s, "
                  f"half {r['p50Back']} s, 90% {r['p90Back']} s, 99% {r['p99Back']} s, all {r['allBack']} s after "
                  f"the kill; {r.get('accepted')} notices accepted, {r.get('missing')} copies missing, "
                  f"{r.get('dups')} duplicates; "
                  f"node B {r['nodeBCpuSeconds'] or 0:.1f} s CPU; {r.get('attempts')} connection attempts "
                  f"({r.get('refused') or 0} answered 503); "
                  f"back per second: {r['perSecond']}", flush=True)
    out = args.out or HERE / "results" / f"failover-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"clients": args.clients, "jitterMs": args.jitter_ms, "rate": args.rate,
                               "loadavg": os.getloadavg(), "runs": runs}, indent=1))
    print(f"results: {out}")
    return 0 if all(r.get("missing") == 0 and r.get("allBack") is not None for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
