"""``deptcast.send`` throughput, closed loop: how fast one sender can push, and the fan-out.

    .venv/bin/python bench/send_fanout.py [--subscribers 50] [--messages 2000] [--window 20]

Starts a fresh 1-node deptcast (SQLite, rate limit off) through its outside interfaces
(``harness.py``), connects SUBSCRIBERS WAMP sessions of one department (the load generator,
``burst`` mode), and has one publisher call ``deptcast.send`` MESSAGES times with WINDOW calls in
flight. Reports accepted sends/s (until the last call returned), deliveries/s (until the last
subscriber had the last message), send-to-delivery latency, and the node's CPU per send and
per delivery. Unlike ``compare.py``'s fixed offered rates, this measures the send path's
ceiling: the sender waits for its answers.
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=h.REPO, help="the deptcast checkout to measure")
    parser.add_argument("--subscribers", type=int, default=50)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--window", type=int, default=20, help="calls in flight")
    parser.add_argument("--size", type=int, default=100, help="message size in bytes")
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
    node = h.start_single_node(args.root, workdir.path / "node", secret)
    try:
        probe = h.wait_ready(node, secret, workdir.path)
        subscribers = [{"url": node.url, "authid": f"sub{i}", "token": h.mint(secret, f"sub{i}", "bench"),
                        "dept": "bench", "topics": [h.DEPT_TOPIC, h.ALL_TOPIC, probe["userTopic"]]}
                       for i in range(args.subscribers)]
        sender = {"url": node.url, "authid": "sender", "token": h.mint(secret, "sender", "hq", "publisher"),
                  "dept": "hq"}
        config = {"mode": "burst", "subscribers": subscribers, "sender": sender, "to": "bench",
                  "messages": args.messages, "window": args.window, "drain": 600, "size": args.size}
        marks, r = {}, None
        for event in h.Loadgen(config, workdir.path).events():
            if event["event"] in ("window_start", "window_end"):
                marks[event["event"]] = node.cpu()
            elif event["event"] == "burst_result":
                r = event
    finally:
        h.close_loadgens()
        node.stop()
        workdir.cleanup()
    cpu = marks["window_start"].seconds_until(marks["window_end"])
    print(f"{args.subscribers} subscribers, {args.messages} sends ({args.window} in flight):")
    print(f"accepted sends:  {r['acceptedPerSec']:9,.0f} /s  ({args.messages} in {r['sendSeconds']:.2f} s)")
    print(f"deliveries:      {r['deliveredPerSec']:9,.0f} /s  ({r['delivered']} in {r['totalSeconds']:.2f} s; "
          f"missing {r['missing']}, errors {r['errors'] or 0})")
    print(f"latency:         p50 {r['p50Ms']} ms, p99 {r['p99Ms']} ms, max {r['maxMs']} ms")
    print(f"node CPU:        {cpu:.2f} s = {cpu * 1e6 / args.messages:,.0f} µs per send, "
          f"{cpu * 1e6 / max(1, r['delivered']):.1f} µs per delivery (load generator {r['loadgenCpuPct']:.0f}%)")
    out = h.BENCH / "results" / f"send_fanout-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "state": state, "params": {
        k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, "result": r,
        "nodeCpuSeconds": cpu}, indent=1))
    return 1 if r["missing"] or r["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
