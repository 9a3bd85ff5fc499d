"""How far the full mesh goes: N nodes (``deptcast cluster init``, PostgreSQL), one subscriber
per node, notices sent via node 1 at fixed rates.

For each N (default 2, 3, 4, 6) and each variant (``before``: the same checkout with the
``mesh.one_hop`` and ``mesh.republish`` patches, or those named by ``--leave-out``, left out
through the node config's ``leave_out``, or another checkout
given with ``--before-root``; ``after``: as shipped):

* **all links up after**: from starting the nodes until every node's ``/health`` answers 200
  (it serves, and every link with every peer is up both ways);
* **node-to-node TCP connections**: established connections to a node's port from another
  node, read from ``/proc/net/tcp`` once the links are up and before any client connects
  (a full mesh owns N(N-1) links);
* **memory per node**: RSS of a node's processes (controller, router worker), after the links
  are up;
* **CPU per notice**, each rate step: the sending node's (n1) and each other node's CPU seconds
  in the step's window, less the same node's idle CPU over an equal window just before the
  steps (clients connected, nothing sent), divided by the notices delivered to that node's
  subscriber in the window; and the cluster's total (all nodes) per notice.

Each curve is fitted by least squares as ``a + b*(N-1)`` (per node, and the cluster's total)
and the cluster's total also as ``a + b*N(N-1)`` (against the number of links).

    scripts/bench mesh                          # N = 2,3,4,6, before and after, 60/s and 500/s
    scripts/bench mesh --nodes 2,6 --rates 500 --variants after
    scripts/bench mesh --before-root /path/to/main   # the baseline from another checkout
    scripts/bench mesh --nodes 2,3 --leave-out mesh.own_topics   # before: without that patch

Nothing here imports deptcast's own package; see ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cpu_profile as profile
import harness as h

DEPT = "mesh"
SENDER_DEPT = "meshsend"
#: the patches the ``before`` variant leaves out
PATCHES = ("mesh.one_hop", "mesh.republish")


def leave_out_patch(node_dir: Path, patches: Sequence[str] = PATCHES) -> None:
    """Ask a node (through its ``config.json``) to leave ``patches`` out: the root component's
    ``extra.leave_out``."""
    path = node_dir / "config.json"
    config = json.loads(path.read_text())
    found = False
    for worker in config.get("workers", []):
        for component in worker.get("components", []) or []:
            if str(component.get("classname", "")).endswith("RootComponent"):
                extra = component.setdefault("extra", {})
                extra["leave_out"] = sorted(set(extra.get("leave_out") or []) | set(patches))
                found = True
    if not found:
        raise RuntimeError(f"no root component in {path}")
    path.write_text(json.dumps(config, indent=2))


def health_ok(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_links_up(cluster: h.DeptcastCluster, started: float, timeout: float = 180.0) -> float:
    """Seconds from ``started`` until every node's ``/health`` answers 200."""
    deadline = time.monotonic() + timeout
    pending = {n.port for n in cluster.nodes}
    while pending:
        for node in cluster.nodes:
            node.check_alive()
        pending = {p for p in pending if not health_ok(p)}
        if not pending:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"links not up after {timeout}s (nodes on ports {sorted(pending)})")
        time.sleep(0.1)
    return time.monotonic() - started


def node_connections(ports: Sequence[int]) -> int:
    """Established TCP connections from a client port to one of ``ports``, counted once
    (the client side's line of ``/proc/net/tcp``; the nodes listen on 127.0.0.1)."""
    wanted = set(ports)
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 4 or fields[3] != "01":  # ESTABLISHED
                continue
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if remote_port in wanted and local_port not in wanted:
                count += 1
    return count


def cpu_seconds(node: h.DeptcastNode) -> float:
    return sum(h.cpu_ticks(node.pids()).values()) / h.CLK_TCK


def wait_nodes_quiet(cluster: h.DeptcastCluster, max_wait: float, below: float = 0.05) -> Optional[float]:
    """Wait until every node used under ``below`` of a core over a second; seconds waited, or
    ``None`` if they never were within ``max_wait``."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < max_wait:
        c0 = {node.name: cpu_seconds(node) for node in cluster.nodes}
        time.sleep(1.0)
        if all(cpu_seconds(node) - c0[node.name] < below for node in cluster.nodes):
            return round(time.monotonic() - t0, 1)
    return None


def measure_idle(cluster: h.DeptcastCluster, seconds: float) -> Dict[str, float]:
    """Each node's CPU (cores) with nothing sent: the least of one-second readings over
    ``seconds`` (a reading that catches a start-up chore or other work is not the idle)."""
    readings: Dict[str, List[float]] = {node.name: [] for node in cluster.nodes}
    for _ in range(max(1, int(seconds))):
        c0 = {node.name: cpu_seconds(node) for node in cluster.nodes}
        t0 = time.monotonic()
        time.sleep(1.0)
        elapsed = time.monotonic() - t0
        for node in cluster.nodes:
            readings[node.name].append((cpu_seconds(node) - c0[node.name]) / elapsed)
    print("      idle CPU readings (% of a core): " + "; ".join(
        f"{k} " + ",".join(f"{100 * v:.0f}" for v in vs) for k, vs in readings.items()), flush=True)
    return {k: min(vs) for k, vs in readings.items()}


def fit(xs: Sequence[float], ys: Sequence[float]) -> Optional[Dict[str, float]]:
    """Least squares ``y = a + b*x``."""
    pairs = [(x, y) for x, y in zip(xs, ys) if y is not None]
    if len(pairs) < 2:
        return None
    n = len(pairs)
    mx = sum(x for x, _ in pairs) / n
    my = sum(y for _, y in pairs) / n
    sxx = sum((x - mx) ** 2 for x, _ in pairs)
    if sxx == 0:
        return None
    b = sum((x - mx) * (y - my) for x, y in pairs) / sxx
    return {"a": my - b * mx, "b": b}


def spec(secret: str, endpoint: str, user: str, dept: str, role: str = "member", subscribe: bool = True) -> dict:
    return {"url": endpoint + "/ws", "authid": user, "token": h.mint(secret, user, dept, role), "dept": dept,
            "history": False, "topics": [h.DEPT_TOPIC] if subscribe else []}


def measure(n: int, variant: str, root: Path, args, workdir: Path) -> dict:
    before_patch = variant == "before" and args.before_root is None

    def configure(node_dir: Path) -> None:
        if before_patch:
            leave_out_patch(node_dir, args.leave_out)

    started = time.monotonic()
    # the publisher's rate limit off: at 500/s it refused a part of the sends (counted missing)
    cluster = h.DeptcastCluster(root, workdir / f"mesh-{variant}-{n}-{int(time.time() * 1000)}", args.pg,
                                nodes=n, configure=configure, extra_env={"DEPTCAST_PUBLISHER_RATE": "0"})
    try:
        links_up = wait_links_up(cluster, started)
        ports = [node.port for node in cluster.nodes]
        connections = node_connections(ports)
        for node in cluster.nodes:
            h.wait_ready(node, cluster.secret, workdir)
        # the probes' short-lived subscriptions can set the links re-creating them back and forth
        # for a while (each node's link forwards the subscriptions the other's made): wait it out
        result_quiet = wait_nodes_quiet(cluster, args.quiet_nodes_wait)
        time.sleep(args.settle)
        rss = {node.name: node.rss() for node in cluster.nodes}
        result: dict = {"nodes": n, "variant": variant, "root": str(root), "linksUpSeconds": round(links_up, 2),
                        "nodeConnections": connections, "links": n * (n - 1),
                        "rssMiB": {k: round(v / 2 ** 20, 1) for k, v in rss.items()},
                        "nodesQuietAfterSeconds": result_quiet, "steps": []}
        print(f"    {variant}, {n} nodes: links up after {links_up:.1f} s, {connections} node-to-node "
              f"connections, RSS per node {min(rss.values()) / 2 ** 20:.0f}-{max(rss.values()) / 2 ** 20:.0f} MiB",
              flush=True)
        endpoints = [node.base for node in cluster.nodes]
        sender = spec(cluster.secret, endpoints[0], "sender", SENDER_DEPT, "publisher", subscribe=False)
        # links carry the department: a subscriber on the last node receives a notice sent via n1
        h.wait_linked("wamp", sender, spec(cluster.secret, endpoints[-1], "linkprobe", DEPT), DEPT, workdir)
        config = {
            "mode": "rates", "kind": "wamp",
            "receivers": [spec(cluster.secret, endpoints[i], f"r{i + 1}", DEPT) for i in range(n)],
            "sender": sender, "to": DEPT, "steps": args.rates,
            "warmup": args.warmup, "duration": args.duration, "drain": args.drain,
            "threads": 1, "concurrency": 10, "size": args.size, "handshake": True,
        }
        loadgen = h.Loadgen(config, workdir, stdin=True)
        idle: Dict[str, float] = {}
        cpu0: Dict[str, float] = {}
        cpu1: Dict[str, float] = {}
        for event in loadgen.events():
            kind = event["event"]
            if kind == "step_ready":
                if not idle:  # the nodes' idle CPU, receivers connected, nothing sent
                    if args.quiet_below:
                        h.wait_quiet(args.quiet_below, args.quiet_wait)
                    idle = measure_idle(cluster, args.idle)
                    result["idleCpuPct"] = {k: round(100 * v, 1) for k, v in idle.items()}
                elif args.quiet_below:
                    h.wait_quiet(args.quiet_below, args.quiet_wait)
                loadgen.tell("go")
            elif kind == "window_start":
                cpu0 = {node.name: cpu_seconds(node) for node in cluster.nodes}
                window_t0 = time.monotonic()
                if args.profile:  # the router worker of a receiving node (n2)
                    routers = [p for p in cluster.nodes[1].pids() if h.process_label(p) == "router"]
                    raw = workdir / f"profile-{variant}-{n}-{event['rate']}-{routers[0]}.raw"
                    sampling = (raw, profile.record(routers[0], args.duration, raw))
            elif kind == "window_end":
                cpu1 = {node.name: cpu_seconds(node) for node in cluster.nodes}
                window = time.monotonic() - window_t0
            elif kind == "step_result":
                per_node = event["delivered"] / n  # one subscriber per node, each gets every notice
                ms = {}
                for node in cluster.nodes:
                    used = cpu1[node.name] - cpu0[node.name] - idle[node.name] * window
                    ms[node.name] = 1000 * used / per_node if per_node else None
                others = [v for k, v in ms.items() if k != "n1" and v is not None]
                step = {
                    "rate": event["sendRate"], "windowSeconds": round(window, 2),
                    "noticesPerSec": round(per_node / event["windowSeconds"], 1),
                    "missing": event["missing"], "dups": event["dups"], "p50Ms": event["p50Ms"],
                    "p99Ms": event["p99Ms"], "cpuMsPerNotice": {k: round(v, 3) for k, v in ms.items()},
                    "sendingNodeMs": round(ms["n1"], 3),
                    "otherNodeMs": [round(min(others), 3), round(max(others), 3)] if others else None,
                    "otherNodeMeanMs": round(sum(others) / len(others), 3) if others else None,
                    "clusterMs": round(sum(v for v in ms.values() if v is not None), 3),
                    "senderErrors": event["senderErrors"], "loadgenCpuPct": round(event["loadgenCpuPct"], 1),
                }
                if args.profile:
                    raw, process = sampling
                    process.wait(timeout=60)
                    if raw.exists():
                        step["profileN2"] = profile.summarize(raw, top=25)
                        print("      n2's router worker:\n" + "\n".join(profile.lines(step["profileN2"], top=25)))
                result["steps"].append(step)
                print(f"      {step['rate']}/s offered, {step['noticesPerSec']}/s delivered per node: "
                      f"sending node {step['sendingNodeMs']:.2f} ms, each other node "
                      + (f"{step['otherNodeMs'][0]:.2f}-{step['otherNodeMs'][1]:.2f} ms" if others else "-")
                      + f", cluster {step['clusterMs']:.2f} ms per notice; p99 {step['p99Ms']} ms, "
                      f"missing {step['missing']}, dups {step['dups']}", flush=True)
        return result
    finally:
        h.close_loadgens()
        cluster.stop()


def fits(runs: List[dict]) -> dict:
    """Per variant and rate: the receiving node's and the cluster's CPU per notice against N."""
    out: dict = {}
    for variant in sorted({r["variant"] for r in runs}):
        mine = [r for r in runs if r["variant"] == variant and "error" not in r]
        for rate in sorted({s["rate"] for r in mine for s in r["steps"]}):
            rows = [(r["nodes"], s) for r in mine for s in r["steps"] if s["rate"] == rate]
            out[f"{variant}@{rate}"] = {
                "otherNodeMs_vs_N-1": fit([n - 1 for n, _ in rows], [s["otherNodeMeanMs"] for n, s in rows if n > 1]),
                "sendingNodeMs_vs_N-1": fit([n - 1 for n, _ in rows], [s["sendingNodeMs"] for _, s in rows]),
                "clusterMs_vs_N-1": fit([n - 1 for n, _ in rows], [s["clusterMs"] for _, s in rows]),
                "clusterMs_vs_links": fit([n * (n - 1) for n, _ in rows], [s["clusterMs"] for _, s in rows]),
            }
    return out


def table(runs: List[dict]) -> str:
    lines = ["| variant | nodes | links up after | rate offered | delivered/s per node | CPU per notice, sending node "
             "| CPU per notice, each other node | cluster total per notice | memory per node | node-to-node "
             "TCP connections |", "|" + " --- |" * 10]
    for r in runs:
        if "error" in r:
            lines.append(f"| {r['variant']} | {r['nodes']} | failed: {r['error'][:60]} |" + " |" * 7)
            continue
        rss = list(r["rssMiB"].values())
        for s in r["steps"]:
            other = f"{s['otherNodeMs'][0]:.2f}–{s['otherNodeMs'][1]:.2f} ms" if s["otherNodeMs"] else "-"
            lines.append(f"| {r['variant']} | {r['nodes']} | {r['linksUpSeconds']:.1f} s | {s['rate']}/s | "
                         f"{s['noticesPerSec']:.0f} | {s['sendingNodeMs']:.2f} ms | {other} | "
                         f"{s['clusterMs']:.2f} ms | "
                         f"{min(rss):.0f}–{max(rss):.0f} MiB | {r['nodeConnections']} |")
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=h.REPO, help="the checkout measured (its .venv)")
    parser.add_argument("--before-root", type=Path, default=None,
                        help="the baseline checkout (default: --root with the mesh.* patches left out)")
    parser.add_argument("--nodes", default="2,3,4,6", help="cluster sizes")
    parser.add_argument("--leave-out", default=",".join(PATCHES),
                        help="the patches the before variant leaves out (comma-separated)")
    parser.add_argument("--variants", default="before,after", help="before, after or both")
    parser.add_argument("--rates", default="60,500", help="notices/s sent via n1, one step each")
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--duration", type=float, default=10, help="seconds measured per step")
    parser.add_argument("--drain", type=float, default=10)
    parser.add_argument("--idle", type=float, default=6, help="seconds of idle CPU measured per node")
    parser.add_argument("--quiet-nodes-wait", type=float, default=60,
                        help="longest wait for the nodes to be idle before the idle reading, seconds")
    parser.add_argument("--settle", type=float, default=2, help="seconds after links up before memory readings")
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--pg", default=h.PG_URL)
    parser.add_argument("--quiet-below", type=float, default=0)
    parser.add_argument("--quiet-wait", type=float, default=60)
    parser.add_argument("--profile", action="store_true",
                        help="sample the router worker of a receiving node (n2) with py-spy in each step's window")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="results JSON (default bench/results/mesh-<date>.json)")
    args = parser.parse_args(argv)
    args.nodes = [int(x) for x in args.nodes.split(",") if x]
    args.rates = [int(x) for x in args.rates.split(",") if x]
    args.variants = [v for v in args.variants.split(",") if v]
    args.leave_out = tuple(p for p in args.leave_out.split(",") if p)
    args.root = args.root.resolve()
    if args.before_root is not None:
        args.before_root = args.before_root.resolve()
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    h.stop_cleanly_on_signals()
    h.raise_nofile()
    workdir = h.Workdir(keep=args.keep)
    results: dict = {"machine": h.machine_info(args.root), "start": h.machine_state(),
                     "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                     "runs": []}
    print(f"deptcast {results['machine']['deptcast_commit']} at {args.root}; loadavg {results['start']['loadavg']}; "
          f"work directory {workdir.path}", flush=True)
    failed = False
    try:
        # sizes outer, variants inner: before and after of one N measured close together
        for n in args.nodes:
            for variant in args.variants:
                root = args.before_root if (variant == "before" and args.before_root) else args.root
                print(f"==> mesh: {n} nodes, {variant}", flush=True)
                try:
                    results["runs"].append(measure(n, variant, root, args, workdir.path))
                except Exception as exc:  # one size failing must not lose the others' figures
                    failed = True
                    print(f"    failed: {type(exc).__name__}: {exc}", flush=True)
                    results["runs"].append({"nodes": n, "variant": variant, "error": f"{type(exc).__name__}: {exc}"})
    finally:
        results["end"] = h.machine_state()
        results["fits"] = fits(results["runs"])
        out = args.out or (h.BENCH / "results" / f"mesh-{time.strftime('%Y%m%d-%H%M%S')}.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2))
        workdir.cleanup()
    print()
    print(table(results["runs"]))
    print()
    for key, value in results["fits"].items():
        print(f"fit {key}: " + ", ".join(
            f"{name} = {v['a']:.3f} + {v['b']:.3f}x" if v else f"{name}: -" for name, v in value.items()))
    print(f"\nresults: {out}; loadavg at the end {results['end']['loadavg']}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
