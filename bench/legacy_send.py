"""Legacy send path at light load: latency and node CPU per send (issue 8, item 2).

    .venv/bin/python bench/legacy_send.py                    # one run: 20 sends/s for 15 s
    .venv/bin/python bench/legacy_send.py --runs 3           # three runs, each on a fresh node
    .venv/bin/python bench/legacy_send.py --root /other/checkout

One legacy socket (``/webSocket/echo_u1``, a member of department ``echo``) sends
``{"to": "echo", "message": ...}`` at a fixed rate; it is subscribed to its own department, so
every message comes back to it. Per run, on a fresh 1-node deptcast (SQLite, rate limit off):

* **latency**: from the frame's send until the same socket receives the message text back
  (p50, p99, max over the messages sent in the measured window) — the whole legacy path: frame
  in, validation, rate limit, store, publish, delivery;
* **CPU per send**: CPU time of every process of the node (crossbar controller, router worker,
  container worker) over the window, divided by the sends in it; the node's idle CPU (the same
  socket connected, nothing sent, measured just before) is shown beside it.

The node is driven only through its outside interfaces (``harness.py``). Results go to
``bench/results/legacy_send-<date>.json``.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as h


def one_run(args, workdir: Path, i: int) -> dict:
    secret = secrets.token_urlsafe(48)
    node = h.start_single_node(args.root, workdir / f"node{i}", secret)
    try:
        h.wait_ready(node, secret, workdir)
        time.sleep(args.settle)
        token = h.mint(secret, "u1", "echo")
        if args.via == "legacy":
            spec = {"base": node.base, "dept": "echo", "authid": "u1", "token": token}
        else:  # the same through deptcast.send, for comparison
            spec = {"url": node.url, "dept": "echo", "authid": "u1", "token": token, "topics": [h.DEPT_TOPIC]}
        config = {"mode": "echo", "kind": args.via, "spec": spec, "to": "echo", "rate": args.rate,
                  "warmup": args.warmup,
                  "duration": args.duration, "drain": 10, "size": args.size, "baseline": args.baseline}
        marks = {}
        result = None
        for event in h.Loadgen(config, workdir).events():
            kind = event["event"]
            if kind in ("baseline_start", "baseline_end", "window_start", "window_end"):
                marks[kind] = node.cpu()
            elif kind == "echo_result":
                result = event
        window_cpu = marks["window_start"].seconds_until(marks["window_end"])
        result["nodeCpuSeconds"] = window_cpu
        # the rest of the machine meanwhile (other work on a shared machine shows here)
        result["otherCpuPct"] = (100 * marks["window_start"].machine_seconds_until(marks["window_end"])
                                 / result["windowSeconds"] - 100 * window_cpu / result["windowSeconds"]
                                 - result["loadgenCpuPct"])
        result["cpuUsPerSend"] = window_cpu * 1e6 / result["sentInWindow"]
        result["cpuUsPerSendByProcess"] = {
            k: v * 1e6 / result["sentInWindow"]
            for k, v in marks["window_start"].by_label(marks["window_end"]).items()}
        if args.baseline:
            base = marks["baseline_start"].seconds_until(marks["baseline_end"])
            base_span = marks["baseline_end"].t - marks["baseline_start"].t
            result["idleCpuPct"] = 100 * base / base_span
            idle_in_window = base / base_span * result["windowSeconds"]
            result["cpuUsPerSendLessIdle"] = (window_cpu - idle_in_window) * 1e6 / result["sentInWindow"]
        result["state"] = h.machine_state()
        return result
    finally:
        h.close_loadgens()
        node.stop()


def span(values) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    lo, hi = min(values), max(values)
    return f"{lo:.1f}" if round(lo, 1) == round(hi, 1) else f"{lo:.1f}–{hi:.1f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=h.REPO, help="the deptcast checkout to measure")
    parser.add_argument("--rate", type=float, default=20.0, help="sends per second")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of sending before the window")
    parser.add_argument("--baseline", type=float, default=5.0, help="seconds of idle measured first (0: none)")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds after the node is ready")
    parser.add_argument("--size", type=int, default=100, help="message size in bytes")
    parser.add_argument("--runs", type=int, default=1, help="runs, each on a fresh node")
    parser.add_argument("--via", choices=("legacy", "wamp"), default="legacy",
                        help="send through a legacy socket (default) or deptcast.send over WAMP, for comparison")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    h.stop_cleanly_on_signals()
    args.root = args.root.resolve()
    workdir = h.Workdir(keep=args.keep)
    machine = h.machine_info(args.root)
    start = h.machine_state()
    print(f"deptcast {machine['deptcast_commit']}{' (dirty)' if machine['deptcast_dirty'] else ''} at {args.root}; "
          f"{machine['cores']} cores; {start['date']}, loadavg {start['loadavg']}", flush=True)
    runs = []
    try:
        for i in range(args.runs):
            r = one_run(args, workdir.path, i)
            runs.append(r)
            print(f"run {i + 1}: {r['sentInWindow']} sends in {r['windowSeconds']:.1f}s, {r['received']}/{r['sent']} "
                  f"back, errors {r['errors'] or 0}; latency p50 {r['p50Ms']} ms, p99 {r['p99Ms']} ms, "
                  f"max {r['maxMs']} ms; node CPU {r['cpuUsPerSend']:.0f} µs/send"
                  + (f" ({r['cpuUsPerSendLessIdle']:.0f} less the idle {r['idleCpuPct']:.1f}%)"
                     if args.baseline else "")
                  + " = " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(r["cpuUsPerSendByProcess"].items()))
                  + f"; other work {r['otherCpuPct']:.0f}% of a core, loadavg {r['state']['loadavg']}", flush=True)
    finally:
        end = h.machine_state()
        out = args.out or h.BENCH / "results" / f"{args.via}_send-{time.strftime('%Y%m%d-%H%M%S')}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"machine": machine, "start": start, "end": end, "params": {
            k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, "runs": runs}, indent=1))
        workdir.cleanup()
    if runs:
        print(f"\n{args.via} send at {args.rate:g}/s over {len(runs)} run(s): "
              f"latency p50 {span(r['p50Ms'] for r in runs)} ms, "
              f"p99 {span(r['p99Ms'] for r in runs)} ms; node CPU per send "
              f"{span(r['cpuUsPerSend'] / 1000 for r in runs)} ms"
              + (f" ({span(r['cpuUsPerSendLessIdle'] / 1000 for r in runs)} ms less idle)" if args.baseline else "")
              + "; of which " + ", ".join(
                  f"{k} {span(r['cpuUsPerSendByProcess'].get(k, 0) / 1000 for r in runs)} ms"
                  for k in sorted({k for r in runs for k in r["cpuUsPerSendByProcess"]}))
              + f"\n(results in {out})")
    failed = any(r["missing"] or r["errors"] for r in runs) or len(runs) < args.runs
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
