"""deptcast side by side with Socket.IO + Redis, in one run, on this machine.

    .venv/bin/python bench/compare.py                 # the full comparison (about 9 minutes)
    .venv/bin/python bench/compare.py --quick         # a smoke run (about 1.5 minutes)
    .venv/bin/python bench/compare.py --root /path/to/other/checkout --systems wamp,peer

Each system is started in turn, through its outside interfaces only (see ``harness.py``):

* ``wamp``    deptcast, 1 node (SQLite), receivers and sender over WAMP on ``/ws``
* ``legacy``  deptcast, 1 node, receivers and sender on the legacy endpoint ``/webSocket/<key>``
* ``cluster`` deptcast, 2 nodes (``cluster init``, PostgreSQL), receivers split over both
  nodes, the sender on node 1
* ``peer``    Socket.IO 4.8 with ``@socket.io/redis-adapter``, 2 processes on the local Redis,
  receivers split over both, the sender on the first

and measured three ways:

1. **rates**: R receivers (default 500) in one department, a sender offering a fixed rate of
   100-byte messages; each step (default 10k, 20k, 40k, 80k deliveries/s) runs a warm-up, then
   a measurement window. Per step: deliveries/s inside the window, send-to-delivery latency
   (p50/p99) of the messages sent inside it, messages missing after the drain time, duplicates,
   server CPU (every process of the system, from ``/proc``) per delivery, and the load
   generator's own CPU.
2. **memory**: N idle connections (default 5,000; deptcast WAMP sessions with their three
   subscriptions, legacy sockets, Socket.IO sockets in a room): the RSS growth of all the
   system's processes divided by N, after they open and again after an idle wait.
3. **storm**: C clients (default 2,000) connecting at once (deptcast: ticket auth, the three
   subscriptions and one ``deptcast.history`` call; legacy: the socket opens; Socket.IO:
   connect and join a room): time until the last is ready, and server CPU per client.

The results print as tables and go to ``bench/results/compare-<date>.json``.
"""

from __future__ import annotations

import argparse
import secrets
import json
import math
import sys
import time
import traceback
from pathlib import Path
from typing import List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as h
import cpu_profile as profile
import stages

SYSTEMS = {
    "wamp": "deptcast 1 node, WAMP",
    "legacy": "deptcast 1 node, legacy sockets",
    "cluster": "deptcast 2-node cluster, WAMP",
    "peer": "Socket.IO 4.8 + Redis adapter, 2 processes",
    "lbcluster": "deptcast cluster of one node per core behind its nginx, WAMP",
}
#: systems measured in the storm only
STORM_ONLY = ("lbcluster",)
DEPT = "bench"
SENDER_DEPT = "hq"


# ----------------------------------------------------------------------------- systems

class Running:
    """A started system: its server, endpoints, secret and the topic forms it accepts."""

    def __init__(self, system: str, server: h.Server, secret: Optional[str], endpoints: List[str],
                 user_topic: Optional[str] = None) -> None:
        self.system, self.server, self.secret, self.endpoints = system, server, secret, endpoints
        self.user_topic = user_topic

    @property
    def kind(self) -> str:
        return {"wamp": "wamp", "cluster": "wamp", "lbcluster": "wamp", "legacy": "legacy"}.get(self.system, "peer")

    def spec(self, i: int, user: str, dept: str = DEPT, role: str = "member", history: bool = False,
             topics: bool = True, ack: bool = False) -> dict:
        """The load generator's description of client number ``i`` (spread over the endpoints)."""
        endpoint = self.endpoints[i % len(self.endpoints)]
        if self.system == "peer":
            return {"base": endpoint, "dept": dept}
        token = h.mint(self.secret, user, dept, role)
        if self.system == "legacy":
            return {"base": endpoint, "dept": dept, "authid": user, "token": token}
        return {"url": endpoint + "/ws", "authid": user, "token": token, "dept": dept, "history": history,
                "ack": ack, "topics": [h.DEPT_TOPIC, h.ALL_TOPIC, self.user_topic] if topics else []}

    def sender_spec(self) -> dict:
        # a publisher of another department: it does not receive what it sends
        return self.spec(0, "sender", SENDER_DEPT, "publisher", topics=False)

    def stop(self) -> None:
        self.server.stop()


def start(system: str, args, workdir: Path) -> Running:
    t = time.monotonic()
    if system in ("wamp", "legacy"):
        secret = secrets.token_urlsafe(48)
        node = h.start_single_node(args.root, workdir / f"{system}-{int(time.time() * 1000)}", secret)
        try:
            probe = h.wait_ready(node, secret, workdir)
        except BaseException:
            node.stop()
            raise
        running = Running(system, node, secret, [node.base], probe["userTopic"])
    elif system == "cluster":
        cluster = h.DeptcastCluster(args.root, workdir / f"cluster-{int(time.time() * 1000)}", args.pg)
        try:
            probes = [h.wait_ready(n, cluster.secret, workdir) for n in cluster.nodes]
            running = Running(system, cluster, cluster.secret, [n.base for n in cluster.nodes],
                              probes[0]["userTopic"])
            # links up: a subscriber on node 2 receives a message sent via node 1
            h.wait_linked("wamp", running.sender_spec(), running.spec(1, "linkprobe"), DEPT, workdir)
        except BaseException:
            cluster.stop()
            raise
    elif system == "lbcluster":
        lbc = h.LocalCluster(args.root, workdir / f"lbcluster-{int(time.time() * 1000)}", args.pg)
        try:
            probes = [h.wait_ready(n, lbc.secret, workdir) for n in lbc.nodes]
            h.wait_ready(lbc, lbc.secret, workdir)  # and through nginx
            running = Running(system, lbc, lbc.secret, [lbc.base], probes[0]["userTopic"])
        except BaseException:
            lbc.stop()
            raise
    elif system == "peer":
        peer = h.SocketIoPeer(workdir, redis_url=args.redis)
        try:
            running = Running(system, peer, None, peer.bases())
            h.wait_linked(args.sio_client, running.sender_spec(), running.spec(1, "linkprobe"), DEPT, workdir)
        except BaseException:
            peer.stop()
            raise
    else:
        raise ValueError(system)
    print(f"    {SYSTEMS[system]}: ready in {time.monotonic() - t:.1f}s", flush=True)
    return running


#: every wait for a quiet machine: what for, how long, how busy it was at the end
QUIET_LOG: List[dict] = []


def wait_quiet(args, what: str) -> None:
    """With --quiet-below, wait for other work on the machine to calm down before ``what``."""
    if not args.quiet_below:
        return
    t = time.monotonic()
    busy = h.wait_quiet(args.quiet_below, args.quiet_wait)
    waited = time.monotonic() - t
    QUIET_LOG.append({"what": what, "waited": round(waited, 1), "busyPct": round(busy, 1)})
    print(f"    [{what}: machine {busy:.0f}% busy, waited {waited:.0f} s for under {args.quiet_below:g}%]", flush=True)


def loadgen_kind(running: Running, args) -> str:
    return args.sio_client if running.kind == "peer" else running.kind


# ----------------------------------------------------------------------------- measurements

def measure_rates(system: str, args, workdir: Path) -> dict:
    running = start(system, args, workdir)
    try:
        config = {
            "mode": "rates", "kind": loadgen_kind(running, args),
            "receivers": [running.spec(i, f"r{i}") for i in range(args.receivers)],
            "sender": running.sender_spec(), "to": DEPT,
            "steps": [max(1, round(rate / args.receivers)) for rate in args.rates],
            "warmup": args.warmup, "duration": args.duration, "drain": args.drain,
            "threads": args.threads, "concurrency": 50, "size": args.size,
            "handshake": bool(args.quiet_below),
        }
        steps, opened = [], None
        profiling: list = []
        profiles = None
        cpu0 = None
        cpu_in_window = 0.0
        loadgen = h.Loadgen(config, workdir, stdin=bool(args.quiet_below))
        for event in loadgen.events():
            kind = event["event"]
            if kind == "step_ready":
                wait_quiet(args, f"step {event['step'] + 1}")
                loadgen.tell("go")
            elif kind == "opened":
                opened = event
                if event["failures"]:
                    print(f"    {event['failures']} receivers failed to open: {event['firstFailure']}")
            elif kind == "window_start":
                cpu0 = running.server.cpu()
                if args.profile and system != "peer":
                    profiling = start_profiles(running, args.duration, workdir, f"step{len(steps) + 1}")
            elif kind == "window_end":
                cpu1 = running.server.cpu()
                profiles = finish_profiles(profiling) if profiling else None
                profiling = []
                cpu_in_window = cpu0.seconds_until(cpu1)
                by_process = cpu0.by_label(cpu1)
                machine_in_window = cpu0.machine_seconds_until(cpu1)
            elif kind == "step_result":
                event["quietBefore"] = QUIET_LOG[-1] if QUIET_LOG else None
                event["serverCpuSeconds"] = cpu_in_window
                event["serverCpuPct"] = 100 * cpu_in_window / event["windowSeconds"]
                # per kind of process (router, container, controller, postgres; node, redis), % of a core
                event["serverCpuPctByProcess"] = {k: round(100 * v / event["windowSeconds"], 1)
                                                  for k, v in by_process.items()}
                # what the rest of the machine (other work, the kernel's softirqs) took meanwhile
                event["otherCpuPct"] = (100 * machine_in_window / event["windowSeconds"]
                                        - event["serverCpuPct"] - event["loadgenCpuPct"])
                event["cpuUsPerDelivery"] = (cpu_in_window * 1e6 / event["delivered"]) if event["delivered"] else None
                event["offeredPerSec"] = event["sendRate"] * event["receivers"]
                if profiles:
                    event["profile"] = profiles
                steps.append(event)
                print(f"    {event['offeredPerSec']:>7,}/s offered: {event['deliveredPerSec']:>9,.0f}/s delivered, "
                      f"p50 {fmt_ms(event['p50Ms'])}, p99 {fmt_ms(event['p99Ms'])}, "
                      f"{fmt(event['cpuUsPerDelivery'], 1)} µs CPU/delivery (server {event['serverCpuPct']:.0f}%, "
                      f"loadgen {event['loadgenCpuPct']:.0f}%, busiest thread {busiest(event):.0%}, "
                      f"other {event['otherCpuPct']:.0f}%), missing {event['missing']}, dups {event['dups']}"
                      + (f", sender errors {event['senderErrors']}" if event["senderErrors"] else ""),
                      flush=True)
                print_profiles(profiles)
        return {"opened": opened, "steps": steps, "userTopic": running.user_topic}
    finally:
        h.close_loadgens()
        running.stop()


def start_profiles(running: Running, seconds: float, workdir: Path, part: str) -> list:
    """py-spy on each router worker of a deptcast system for ``seconds`` (a step's window, or
    the storm)."""
    out = []
    for pid in running.server.pids():
        if h.process_label(pid) == "router":
            raw = workdir / f"profile-{running.system}-{pid}-{part}.raw"
            out.append((f"router worker {pid}", raw, profile.record(pid, seconds, raw)))
    return out


def finish_profiles(profiling: list) -> dict:
    """The summaries of the profiles :func:`start_profiles` started."""
    summaries = {}
    for label, raw, process in profiling:
        try:
            process.wait(timeout=30)
        except Exception:
            process.kill()
        if raw.exists():
            summaries[label] = profile.summarize(raw)
            summaries[label]["stages"] = stages.shares([raw])
    return summaries


def print_profiles(profiles: Optional[dict]) -> None:
    """Print the summaries of :func:`finish_profiles`, one block per router worker."""
    for pid_label, summary in (profiles or {}).items():
        print(f"      {pid_label}:")
        print("\n".join(profile.lines(summary)), flush=True)
        if summary.get("stages"):
            print("\n".join(stages.lines(summary["stages"])), flush=True)


def measure_memory(system: str, args, workdir: Path) -> dict:
    running = start(system, args, workdir)
    try:
        time.sleep(args.settle)
        base = running.server.rss()
        n = args.idle_connections
        config = {"mode": "idle", "kind": loadgen_kind(running, args), "concurrency": 100,
                  "clients": [running.spec(i, f"i{i}") for i in range(n)]}
        loadgen = h.Loadgen(config, workdir, stdin=True)
        events = loadgen.events()
        opened = next(events)
        time.sleep(args.settle)
        after_open = running.server.rss()
        cpu0 = running.server.cpu()
        time.sleep(args.idle_wait)
        cpu1 = running.server.cpu()
        after_idle = running.server.rss()
        loadgen.tell("close")
        for _ in events:
            pass
        count = opened["count"]
        result = {
            "opened": opened, "connections": count, "rssBaseMiB": base / 2**20, "userTopic": running.user_topic,
            "kibPerConnection": (after_open - base) / count / 1024 if count else None,
            "kibPerConnectionAfterIdle": (after_idle - base) / count / 1024 if count else None,
            "idleSeconds": args.idle_wait, "idleCpuSeconds": cpu0.seconds_until(cpu1),
        }
        print(f"    {count} idle connections (opened in {opened['seconds']:.1f}s, {opened['failures']} failed): "
              f"{fmt(result['kibPerConnection'], 1)} KiB each, {fmt(result['kibPerConnectionAfterIdle'], 1)} KiB "
              f"after {args.idle_wait:.0f}s idle; {result['idleCpuSeconds']:.2f}s CPU while idle", flush=True)
        return result
    finally:
        h.close_loadgens()
        running.stop()


#: seconds the router worker is sampled from the start of a storm (``--profile``)
STORM_PROFILE_SECONDS = 12


def measure_storm(system: str, args, workdir: Path) -> dict:
    running = start(system, args, workdir)
    try:
        time.sleep(args.settle)
        n = args.storm_clients
        config = {"mode": "storm", "kind": loadgen_kind(running, args),
                  "clients": [running.spec(i, f"s{i}", history=True, ack=args.storm_ack) for i in range(n)]}
        cpu0 = cpu1 = None
        result = None
        profiling: list = []
        for event in h.Loadgen(config, workdir).events():
            if event["event"] == "storm_start":
                cpu0 = running.server.cpu()
                if args.profile and system != "peer":
                    # py-spy stops after whole seconds; what it samples after the storm is idle
                    # (not counted)
                    profiling = start_profiles(running, STORM_PROFILE_SECONDS, workdir, "storm")
            elif event["event"] == "storm_end":
                cpu1 = running.server.cpu()
                machine = cpu0.machine_seconds_until(cpu1)
            elif event["event"] == "storm_result":
                result = event
        cpu = cpu0.seconds_until(cpu1)
        result["serverCpuSeconds"] = cpu
        result["serverCpuMsPerClient"] = cpu * 1000 / n
        result["userTopic"] = running.user_topic
        result["otherCpuSeconds"] = machine - cpu - result["loadgenCpuSeconds"]
        print(f"    storm of {n}: {result['ready']} ready in {result['seconds']:.2f}s "
              f"(p50 {result['p50ReadyMs']:.0f} ms), {result['failures']} failed, "
              f"{result['serverCpuMsPerClient']:.2f} ms server CPU per client", flush=True)
        profiles = finish_profiles(profiling) if profiling else None
        if profiles:
            result["profile"] = profiles
            print_profiles(profiles)
        return result
    finally:
        h.close_loadgens()
        running.stop()


# ----------------------------------------------------------------------------- output

def fmt(v, digits: int = 0) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:,.{digits}f}"


def fmt_ms(v) -> str:
    if v is None:
        return "–"
    return f"{v:,.0f} ms" if v >= 10 else f"{v:.1f} ms"


def busiest(step: dict) -> float:
    """The load generator's busiest thread (event-loop utilisation, 1.0 = saturated)."""
    return max(step.get("loadgenMaxThreadElu") or 0, step.get("senderElu") or 0)


def table(headers: List[str], rows: List[List[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def report(results: dict) -> str:
    out = []
    m = results["machine"]
    out.append(f"Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, Linux {m['kernel']}, "
               f"{m['python']}, Node.js {m['node']}; crossbar {m['versions'].get('crossbar', '?')}, "
               f"socket.io {m['socket.io']}, redis-adapter {m['redis-adapter']}")
    out.append(f"deptcast {m['deptcast_commit']} (code of {m.get('deptcast_code_commit', '?')})"
               f"{' with uncommitted changes' if m['deptcast_dirty'] else ''}; "
               f"started {results['start']['date']} (loadavg {results['start']['loadavg']}), "
               f"ended {results['end']['date']} (loadavg {results['end']['loadavg']})")
    p = results["params"]
    out.append(f"{p['receivers']} receivers in one department, {p['size']}-byte messages, "
               f"{p['warmup']:g} s warm-up + {p['duration']:g} s measured per step, drain up to {p['drain']:g} s")
    peer = {s["offeredPerSec"]: s for s in results["rates"].get("peer", {}).get("steps", [])}
    rows = []
    for system, r in results["rates"].items():
        if "error" in r:
            rows.append([SYSTEMS[system], "failed: " + r["error"].splitlines()[0][:80]] + [""] * 9)
            continue
        for s in r["steps"]:
            ref = peer.get(s["offeredPerSec"])
            ratio = (s["cpuUsPerDelivery"] / ref["cpuUsPerDelivery"]
                     if ref and ref.get("cpuUsPerDelivery") and s.get("cpuUsPerDelivery") else None)
            rows.append([SYSTEMS[system], fmt(s["offeredPerSec"]), fmt(s["deliveredPerSec"]),
                         fmt_ms(s["p50Ms"]), fmt_ms(s["p99Ms"]), fmt(s["cpuUsPerDelivery"], 1),
                         "–" if ratio is None else f"{ratio:.2f}x", f"{s['serverCpuPct']:.0f}%",
                         f"{s['loadgenCpuPct']:.0f}% ({busiest(s):.0%})", f"{s.get('otherCpuPct', 0):.0f}%",
                         f"{s['missing']}/{s['dups']}"])
    out.append("")
    out.append(table(["system", "offered/s", "delivered/s", "p50", "p99", "server CPU µs/delivery",
                      "vs peer", "server CPU", "loadgen CPU (busiest thread)", "other CPU", "missing/dup"], rows))
    if results["memory"]:
        out.append("")
        rows = []
        for system, r in results["memory"].items():
            if "error" in r:
                rows.append([SYSTEMS[system], "failed", "", "", ""])
                continue
            rows.append([SYSTEMS[system], fmt(r["connections"]), fmt(r["kibPerConnection"], 1),
                         fmt(r["kibPerConnectionAfterIdle"], 1), f"{r['idleCpuSeconds']:.2f} s"])
        out.append(table(["memory per idle connection", "connections", "KiB each", f"KiB each after "
                          f"{p['idle_wait']:g} s idle", f"server CPU over {p['idle_wait']:g} s idle"], rows))
    if results["storm"]:
        out.append("")
        rows = []
        for system, r in results["storm"].items():
            if "error" in r:
                rows.append([SYSTEMS[system], "failed", "", "", "", "", ""])
                continue
            rows.append([SYSTEMS[system], f"{r['ready']}/{r['clients']}", f"{r['seconds']:.2f} s",
                         fmt_ms(r["p50ReadyMs"]), f"{r['serverCpuMsPerClient']:.2f} ms",
                         f"{r['loadgenCpuSeconds']:.1f} s", f"{r.get('otherCpuSeconds', 0):.1f} s"])
        out.append(table(["connection storm", "ready", "all ready after", "p50 ready", "server CPU per client",
                          "loadgen CPU", "other CPU"], rows))
    return "\n".join(out)


# ----------------------------------------------------------------------------- main

def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=h.REPO,
                        help="the deptcast checkout to measure (with its .venv); default: this one")
    parser.add_argument("--systems", default="wamp,legacy,cluster,peer",
                        help="comma-separated, of: " + ", ".join(SYSTEMS))
    parser.add_argument("--rates", default=None, help="offered deliveries/s per step (default 10000,20000,40000,80000)")
    parser.add_argument("--receivers", type=int, default=None, help="receivers in the department (default 500)")
    parser.add_argument("--warmup", type=float, default=None, help="seconds before each step's window (default 5)")
    parser.add_argument("--duration", type=float, default=None, help="seconds measured per step (default 15)")
    parser.add_argument("--drain", type=float, default=None, help="seconds to wait for stragglers (default 10)")
    parser.add_argument("--size", type=int, default=100, help="message size in bytes")
    parser.add_argument("--idle-connections", type=int, default=None, help="default 5000")
    parser.add_argument("--idle-wait", type=float, default=None, help="seconds held idle (default 30)")
    parser.add_argument("--storm-clients", type=int, default=None, help="default 2000")
    parser.add_argument("--storm-ack", action=argparse.BooleanOptionalAction, default=True,
                        help="storm clients acknowledge their first history page (one deptcast.ack call each, "
                             "as the shipped clients do; default on)")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds before memory readings")
    parser.add_argument("--threads", type=int, default=2, help="receiver threads of the load generator")
    parser.add_argument("--sio-client", choices=("sio", "sio-raw"), default="sio-raw",
                        help="the peer's client: the Socket.IO protocol over ws (sio-raw, default) "
                             "or socket.io-client (sio)")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: rates, memory, storm")
    parser.add_argument("--pg", default=h.PG_URL, help="PostgreSQL for the cluster (a schema is made and dropped)")
    parser.add_argument("--redis", default=h.REDIS_URL, help="Redis for the peer's adapter")
    parser.add_argument("--quiet-below", type=float, default=0,
                        help="before each part and each step, wait until the machine is under this %% of one "
                             "core busy (other work on a shared machine); 0: do not wait")
    parser.add_argument("--quiet-wait", type=float, default=120, help="longest wait for --quiet-below, seconds")
    parser.add_argument("--quick", action="store_true", help="a short smoke run (small numbers, short steps)")
    parser.add_argument("--profile", action="store_true",
                        help="sample deptcast's router worker(s) with py-spy during each rate step's window and "
                             "the storm, and print where their CPU goes (the sampling costs a few %% of a core)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (node dirs, logs)")
    parser.add_argument("--out", type=Path, default=None,
                        help="results JSON (default bench/results/compare-<date>.json)")
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {"rates": "2000,4000" if quick else "10000,20000,40000,80000", "receivers": 100 if quick else 500,
                "warmup": 1 if quick else 5, "duration": 3 if quick else 15, "drain": 3 if quick else 10,
                "idle_connections": 300 if quick else 5000, "idle_wait": 2 if quick else 30,
                "storm_clients": 200 if quick else 2000}
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    args.rates = [int(x) for x in str(args.rates).split(",") if x]
    args.systems = [s for s in args.systems.split(",") if s]
    for s in args.systems:
        if s not in SYSTEMS:
            parser.error(f"unknown system {s}")
    args.skip = {s for s in args.skip.split(",") if s}
    args.root = args.root.resolve()
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    h.stop_cleanly_on_signals()
    nofile = h.raise_nofile()
    need = max(args.idle_connections, args.storm_clients, args.receivers) * 2 + 200
    if nofile < need:
        print(f"the open-files limit is {nofile}; {need} are needed (ulimit -n): lower --idle-connections")
        return 2
    workdir = h.Workdir(keep=args.keep)
    results = {"machine": h.machine_info(args.root), "start": h.machine_state(),
               "params": {k: (str(v) if isinstance(v, Path) else sorted(v) if isinstance(v, set) else v)
                          for k, v in vars(args).items()},
               "rates": {}, "memory": {}, "storm": {}}
    print(f"deptcast {results['machine']['deptcast_commit']} at {args.root}; loadavg {results['start']['loadavg']}; "
          f"work directory {workdir.path}", flush=True)
    failed = False
    started = time.monotonic()
    results["quiet"] = QUIET_LOG
    plan = []
    if "rates" not in args.skip:
        plan += [("rates", s, measure_rates) for s in args.systems if s not in STORM_ONLY]
    if "memory" not in args.skip:
        plan += [("memory", s, measure_memory) for s in args.systems if s != "cluster" and s not in STORM_ONLY]
    if "storm" not in args.skip:
        plan += [("storm", s, measure_storm) for s in args.systems if s != "cluster"]
    try:
        for part, system, measure in plan:
            print(f"==> {part}: {SYSTEMS[system]}", flush=True)
            if args.quiet_below:
                wait_quiet(args, f"{part} {system}")
            try:
                results[part][system] = measure(system, args, workdir.path)
            except Exception as exc:  # one system failing must not lose the others' figures
                failed = True
                traceback.print_exc()
                results[part][system] = {"error": f"{type(exc).__name__}: {exc}"}
    except BaseException:
        results["aborted"] = True  # stopped part-way (a signal): summarize.py leaves it out
        raise
    finally:
        results["end"] = h.machine_state()
        results["seconds"] = time.monotonic() - started
        out = args.out or h.BENCH / "results" / f"compare-{time.strftime('%Y%m%d-%H%M%S')}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1))
        workdir.cleanup()
    print()
    print(report(results))
    print(f"\n(whole run {results['seconds'] / 60:.1f} min; results in {out})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
