"""The send ceiling: how many notices a node (SQLite) and a 2-node cluster (PostgreSQL) take
in, through single ``deptcast.send`` calls and through ``deptcast.send_batch``, beside a
baseline checkout in the same run.

    .venv/bin/python bench/send_ceiling.py [--baseline /work/main] [--repeat 2] [--setups sqlite,pg]

For each repeat, each checkout (the baseline first, then this one) and each setup (``sqlite``:
one node; ``pg``: two nodes on one PostgreSQL, a sender session on each), it starts the system
fresh through its outside interfaces (``harness.py``), connects 5 subscribers per node to the
department, and runs the load generator's closed-loop ``burst`` mode twice: single keyed sends
with 20 calls in flight, then keyed batches (``--batch`` items per call, ``--batch-window``
calls in flight), where a batch of N counts as N notices. A checkout without
``deptcast.send_batch`` is measured for single sends only. Reports notices/s (until the last
call returned), p99 per call, deliveries and errors; writes every figure to
``bench/results/send_ceiling-<time>.json``.

Rate limits are off (``DEPTCAST_RATE=0``, ``DEPTCAST_PUBLISHER_RATE=0``): the ceiling is the
node's, not a policy's.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from pathlib import Path
from typing import Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cpu_profile as profile
import harness as h

SUBSCRIBERS_PER_NODE = 5
DEPT = "bench"
ENV = {"DEPTCAST_RATE": "0", "DEPTCAST_PUBLISHER_RATE": "0"}


def has_send_batch(root: Path) -> bool:
    return "PROC_SEND_BATCH" in (root / "components" / "wamp" / "api.py").read_text()


def start(root: Path, setup: str, workdir: Path, pg: str):
    """Start ``setup`` from ``root``; return (server, node list, secret, user topic)."""
    if setup == "sqlite":
        secret = secrets.token_urlsafe(48)
        node = h.start_single_node(root, workdir / f"node-{int(time.time() * 1000)}", secret, extra_env=ENV)
        try:
            probe = h.wait_ready(node, secret, workdir)
        except BaseException:
            node.stop()
            raise
        return node, [node], secret, probe["userTopic"]
    cluster = h.DeptcastCluster(root, workdir / f"cluster-{int(time.time() * 1000)}", pg, extra_env=ENV)
    try:
        probes = [h.wait_ready(n, cluster.secret, workdir) for n in cluster.nodes]
        sender = {"url": cluster.nodes[0].url, "authid": "sender", "dept": "hq",
                  "token": h.mint(cluster.secret, "sender", "hq", "publisher")}
        receiver = {"url": cluster.nodes[1].url, "authid": "linkprobe", "dept": DEPT,
                    "token": h.mint(cluster.secret, "linkprobe", DEPT), "topics": [h.DEPT_TOPIC]}
        h.wait_linked("wamp", sender, receiver, DEPT, workdir)
    except BaseException:
        cluster.stop()
        raise
    return cluster, cluster.nodes, cluster.secret, probes[0]["userTopic"]


def run_burst(server, nodes, secret: str, user_topic: str, workdir: Path, messages: int, window: int,
              batch: int, profile_seconds: float = 0) -> dict:
    subscribers = [{"url": n.url, "authid": f"sub{n.name}{i}", "token": h.mint(secret, f"sub{n.name}{i}", DEPT),
                    "dept": DEPT, "topics": [h.DEPT_TOPIC, h.ALL_TOPIC, user_topic]}
                   for n in nodes for i in range(SUBSCRIBERS_PER_NODE)]
    senders = [{"url": n.url, "authid": "sender", "token": h.mint(secret, "sender", "hq", "publisher"),
                "dept": "hq"} for n in nodes]
    config = {"mode": "burst", "subscribers": subscribers, "senders": senders, "to": DEPT, "messages": messages,
              "window": window, "batch": batch, "keys": True, "drain": 300, "size": 100}
    marks, result, sampling = {}, None, None
    for event in h.Loadgen(config, workdir).events():
        if event["event"] in ("window_start", "window_end"):
            marks[event["event"]] = server.cpu()
        if event["event"] == "window_start" and profile_seconds:  # the router worker of node 1
            router = [p for p in nodes[0].pids() if h.process_label(p) == "router"][0]
            raw = workdir / f"profile-{router}-{time.time():.0f}.raw"
            sampling = (raw, profile.record(router, profile_seconds, raw))
        elif event["event"] == "burst_result":
            result = event
    assert result is not None
    start, end = marks["window_start"], marks["window_end"]
    result["serverCpuSeconds"] = start.seconds_until(end)
    # each node's processes, and the rest (the cluster's PostgreSQL backends)
    parts: Dict[str, float] = {}
    for node in nodes:
        pids = set(node.pids())
        parts[node.name] = sum(v - start.ticks.get(pid, 0) for pid, v in end.ticks.items() if pid in pids) / h.CLK_TCK
    parts["other"] = result["serverCpuSeconds"] - sum(parts.values())
    result["serverCpuParts"] = parts
    if sampling is not None:
        raw, process = sampling
        process.wait(timeout=120)
        if raw.exists():
            result["profile"] = profile.summarize(raw, top=30)
            print("    node 1's router worker:\n" + "\n".join(profile.lines(result["profile"], top=30)), flush=True)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=h.REPO, help="the deptcast checkout to measure")
    parser.add_argument("--baseline", type=Path, default=None, help="a checkout to measure beside it (e.g. main)")
    parser.add_argument("--pg", default=h.PG_URL, help="PostgreSQL for the 2-node cluster")
    parser.add_argument("--setups", default="sqlite,pg")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--single", type=int, default=6000, help="notices sent by single calls")
    parser.add_argument("--window", type=int, default=20, help="single calls in flight")
    parser.add_argument("--batched", type=int, default=40000, help="notices sent in batches")
    parser.add_argument("--batch", type=int, default=100, help="items per deptcast.send_batch call")
    parser.add_argument("--batch-window", type=int, default=4, help="batch calls in flight")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--profile", type=float, default=0, metavar="SECONDS",
                        help="sample node 1's router worker with py-spy for SECONDS of each burst")
    parser.add_argument("--kinds", default="single,batched", help="which bursts to run")
    args = parser.parse_args(argv)
    h.stop_cleanly_on_signals()
    roots = ([("baseline", args.baseline.resolve())] if args.baseline else []) + [("this", args.root.resolve())]
    workdir = h.Workdir(keep=args.keep)
    state = h.machine_state()
    machines = {label: h.machine_info(root) for label, root in roots}
    print(f"send ceiling; {state['date']}, loadavg {state['loadavg']}; "
          + ", ".join(f"{label}: {m['deptcast_commit']}" for label, m in machines.items()), flush=True)
    rows: List[Dict] = []
    try:
        for rep in range(1, args.repeat + 1):
            for setup in args.setups.split(","):
                for label, root in roots:
                    server, nodes, secret, user_topic = start(root, setup, workdir.path, args.pg)
                    try:
                        kinds = [("single", args.single, args.window, 0)]
                        if has_send_batch(root):
                            kinds.append(("batched", args.batched, args.batch_window, args.batch))
                        kinds = [k for k in kinds if k[0] in args.kinds.split(",")]
                        for kind, messages, window, batch in kinds:
                            r = run_burst(server, nodes, secret, user_topic, workdir.path, messages, window, batch,
                                          args.profile)
                            row = {"repeat": rep, "setup": setup, "checkout": label, "kind": kind,
                                   "notices_per_s": round(r["acceptedPerSec"]), "call_p99_ms": r["callP99Ms"],
                                   "call_p50_ms": r["callP50Ms"], "delivery_p99_ms": r["p99Ms"],
                                   "missing": r["missing"], "errors": r["errors"], "window": window, "batch": batch,
                                   "server_cpu_us_per_notice": round(r["serverCpuSeconds"] * 1e6 / messages),
                                   "server_cpu_us_per_notice_by_part": {
                                       part: round(seconds * 1e6 / messages)
                                       for part, seconds in r["serverCpuParts"].items()}}
                            if "profile" in r:
                                row["profile"] = r["profile"]
                            rows.append(row)
                            print(f"  #{rep} {setup:6} {label:8} {kind:7} {row['notices_per_s']:7,} notices/s  "
                                  f"call p50 {row['call_p50_ms']} ms p99 {row['call_p99_ms']} ms  "
                                  f"cpu {row['server_cpu_us_per_notice']} µs/notice  missing {r['missing']} "
                                  f"errors {r['errors'] or 0}  (µs/notice: " + ", ".join(
                                      f"{part} {us}" for part, us in row["server_cpu_us_per_notice_by_part"].items())
                                  + ")", flush=True)
                    finally:
                        h.close_loadgens()
                        server.stop()
    finally:
        workdir.cleanup()
    out = h.BENCH / "results" / f"send_ceiling-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machines": machines, "state": state, "params": {
        k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, "rows": rows}, indent=1))
    print(f"written {out}")
    return 1 if any(r["missing"] or r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
