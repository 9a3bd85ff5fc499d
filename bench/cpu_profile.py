"""Where a process's CPU goes: py-spy samples of it for a while, summed by function.

Used by ``compare.py --profile`` (the router worker of each deptcast node during each step's
window) and on its own::

    .venv/bin/python bench/cpu_profile.py PID [--seconds 15] [--top 15]

It answers each function's share of the samples: "own" (the function itself was running) and
"total" (the function was on the stack). py-spy samples from outside the process (no change to
it), 100 times a second; it needs ptrace rights over the process (root, or the same user with
``kernel.yama.ptrace_scope`` 0).
"""

import argparse
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional

HERE = Path(__file__).resolve().parent


def py_spy() -> Optional[str]:
    """The py-spy program of this checkout's .venv (``scripts/bench`` installs it), or on PATH."""
    local = HERE.parent / ".venv" / "bin" / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def record(pid: int, seconds: float, out: Path) -> subprocess.Popen:
    """Start sampling ``pid`` for ``seconds`` into ``out`` (py-spy's raw format: one line per
    distinct stack, its sample count last)."""
    program = py_spy()
    if program is None:
        raise RuntimeError("py-spy is not installed (scripts/bench installs it into .venv)")
    return subprocess.Popen([program, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))),
                             "--format", "raw", "--output", str(out), "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _function(frame: str) -> str:
    # "name (path/to/file.py:123)" -> "name (file.py)"
    name, _, where = frame.partition(" (")
    path = where.split(":")[0]
    return f"{name} ({path.rsplit('/', 1)[-1]})" if path else name


def summarize(raw: Path, top: int = 15) -> Dict[str, List[list]]:
    """The ``top`` functions by own and by total share of the samples in a raw py-spy file:
    ``{"samples": n, "own": [[function, share], ...], "total": [...]}``."""
    own: Counter = Counter()
    total: Counter = Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        samples += n
        frames = [_function(f) for f in stack.split(";") if f]
        if not frames:
            continue
        own[frames[-1]] += n
        for f in set(frames):
            total[f] += n
    share = (lambda c: [[f, round(n / samples, 4)] for f, n in c.most_common(top)]) if samples else (lambda c: [])
    return {"samples": samples, "own": share(own), "total": share(total)}


def lines(summary: dict, top: int = 12) -> List[str]:
    """A profile summary as indented text lines."""
    out = [f"      profile ({summary['samples']} samples), own time:"]
    out += [f"        {100 * s:5.1f}%  {f}" for f, s in summary["own"][:top]]
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pid", type=int)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--out", type=Path, default=Path("profile.raw"))
    args = parser.parse_args(argv)
    record(args.pid, args.seconds, args.out).wait()
    summary = summarize(args.out, args.top)
    print("\n".join(lines(summary, args.top)))
    print("      on the stack:")
    for f, s in summary["total"]:
        print(f"        {100 * s:5.1f}%  {f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
