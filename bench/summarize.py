"""Ranges over several runs of ``compare.py``, as markdown tables ready for the README.

    .venv/bin/python bench/summarize.py bench/results/compare-*.json

One table of the rates (a row per offered rate, a column per system: delivered/s, p50/p99,
server CPU per delivery and its ratio to the peer's in the same run), then memory per idle
connection and the connection storm, then the machine and the runs' dates and load averages.
A range ``a–b`` is the lowest and highest value over the runs given.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, Iterable, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare import SYSTEMS, table


def rng(values: Iterable[Optional[float]], digits: int = 0, unit: str = "") -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "–"
    lo, hi = min(vals), max(vals)
    a, b = f"{lo:,.{digits}f}", f"{hi:,.{digits}f}"
    return (a if a == b else f"{a}–{b}") + unit


def _ms(v: float) -> str:
    if v >= 1000:
        return f"{v / 1000:.1f} s"
    return f"{v:.1f} ms" if v < 10 else f"{v:,.0f} ms"


def ms_range(values: Iterable[Optional[float]]) -> str:
    """``lo–hi`` with a unit each (ms below a second, s above); one unit when they share it."""
    vals = [v for v in values if v is not None]
    if not vals:
        return "–"
    lo, hi = _ms(min(vals)), _ms(max(vals))
    if lo == hi:
        return lo
    lo_num, lo_unit = lo.split(" ")
    hi_num, hi_unit = hi.split(" ")
    return f"{lo_num}–{hi}" if lo_unit == hi_unit else f"{lo}–{hi}"


def ratio(step: dict, peer: Dict[int, dict]) -> Optional[float]:
    ref = peer.get(step["offeredPerSec"])
    if not ref or not ref.get("cpuUsPerDelivery") or not step.get("cpuUsPerDelivery"):
        return None
    return step["cpuUsPerDelivery"] / ref["cpuUsPerDelivery"]


def summarize(runs: List[dict]) -> str:
    systems = [s for s in SYSTEMS if any(s in r["rates"] and "steps" in r["rates"][s] for r in runs)]
    rates = sorted({st["offeredPerSec"] for r in runs for s in systems
                    for st in r["rates"].get(s, {}).get("steps", [])})
    rows = []
    for rate in rates:
        row = [f"{rate:,}"]
        for s in systems:
            steps, ratios = [], []
            for r in runs:
                peer = {st["offeredPerSec"]: st for st in r["rates"].get("peer", {}).get("steps", [])}
                for st in r["rates"].get(s, {}).get("steps", []):
                    if st["offeredPerSec"] == rate:
                        steps.append(st)
                        ratios.append(ratio(st, peer))
            if not steps:
                row.append("–")
                continue
            cell = (f"{rng(st['deliveredPerSec'] / 1000 for st in steps)}k/s, "
                    f"p50 {ms_range(st['p50Ms'] for st in steps)}, p99 {ms_range(st['p99Ms'] for st in steps)}, "
                    f"{rng((st['cpuUsPerDelivery'] for st in steps), 1)} µs")
            if s != "peer" and any(x is not None for x in ratios):
                cell += f" ({rng(ratios, 1)}x)"
            missing = sum(st["missing"] + st["dups"] for st in steps)
            if missing:
                cell += f", {missing:,} missing/dup"
            row.append(cell)
        rows.append(row)
    out = [table(["offered deliveries/s"] + [SYSTEMS[s] for s in systems], rows)]
    out.append("")
    out.append("Each cell: delivered/s in the window, send-to-delivery p50 and p99, server CPU per delivery "
               "(every process of the system) and, in brackets, its ratio to the peer's in the same run.")

    mem_rows = []
    for s in SYSTEMS:
        vals = [r["memory"][s] for r in runs if s in r.get("memory", {}) and "error" not in r["memory"][s]]
        if vals:
            mem_rows.append([SYSTEMS[s], rng((v["kibPerConnection"] for v in vals), 1, " KiB"),
                             rng((v["kibPerConnectionAfterIdle"] for v in vals), 1, " KiB"),
                             rng((v["idleCpuSeconds"] * 1000 / v["connections"] / v["idleSeconds"] * 1000
                                  for v in vals), 1, " µs")])
    if mem_rows:
        n = {r["params"]["idle_connections"] for r in runs}
        idle = {r["params"]["idle_wait"] for r in runs}
        out += ["", table([f"{'/'.join(map(str, sorted(n)))} idle connections", "memory each (RSS)",
                           f"after {'/'.join(f'{x:g}' for x in sorted(idle))} s idle",
                           "server CPU per connection per second idle"], mem_rows)]
    storm_rows = []
    for s in SYSTEMS:
        vals = [r["storm"][s] for r in runs if s in r.get("storm", {}) and "error" not in r["storm"][s]]
        if vals:
            storm_rows.append([SYSTEMS[s], rng((v["seconds"] for v in vals), 2, " s"),
                               ms_range(v["p50ReadyMs"] for v in vals),
                               rng((v["serverCpuMsPerClient"] for v in vals), 2, " ms"),
                               f"{sum(v['failures'] for v in vals)}",
                               # clamped: tick rounding makes a quiet storm's "other" slightly negative
                               rng((max(0.0, v["otherCpuSeconds"]) if v.get("otherCpuSeconds") is not None
                                    else None for v in vals), 1, " s")])
    if storm_rows:
        n = {r["params"]["storm_clients"] for r in runs}
        out += ["", table([f"storm of {'/'.join(map(str, sorted(n)))} clients", "all ready after", "p50 ready",
                           "server CPU per client", "failed", "other work meanwhile (CPU)"], storm_rows)]
    m = runs[0]["machine"]
    out += ["", f"Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, Linux {m['kernel']}, "
                f"{m['python']}, Node.js {m['node']}, crossbar {m['versions'].get('crossbar', '?')}, "
                f"socket.io {m['socket.io']}, @socket.io/redis-adapter {m['redis-adapter']}."]
    for r in runs:
        mm = r["machine"]
        other = sorted(st["otherCpuPct"] for sys_ in r["rates"].values() for st in sys_.get("steps", [])
                       if st.get("otherCpuPct") is not None)
        busy = (f"; other work during the measured windows: median {other[len(other) // 2]:.0f}%, "
                f"max {other[-1]:.0f}% of a core" if other else "")
        out.append(f"- run {r['start']['date']} – {r['end']['date'][11:]}: deptcast "
                   f"{mm.get('deptcast_code_commit') or mm['deptcast_commit']}, loadavg {r['start']['loadavg']} -> "
                   f"{r['end']['loadavg']}, {r['seconds'] / 60:.1f} min{busy}")
    p = runs[0]["params"]
    out.append(f"- {p['receivers']} receivers in one department, {p['size']}-byte messages, {p['warmup']:g} s warm-up "
               f"+ {p['duration']:g} s measured per step")
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", type=Path, help="compare-*.json files")
    args = parser.parse_args(argv)
    runs = []
    for p in args.results:
        run = json.loads(p.read_text())
        if run.get("aborted"):
            print(f"(leaving out {p}: the run was stopped part-way)", file=sys.stderr)
        else:
            runs.append(run)
    print(summarize(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
