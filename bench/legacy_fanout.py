"""Cost of the legacy endpoint per connection, and its fan-out rate. Not a test: run it by hand.

    .venv/bin/python bench/legacy_fanout.py --sockets 1000 --messages 200

Starts a throwaway node (SQLite, loopback), reads the router worker's memory and CPU time from
``/proc`` while it opens ``--sockets`` legacy sockets (one department, distinct users, with
tokens), sends ``--messages`` department messages over WAMP and waits until every socket has
every message. With ``--compare-wamp`` it then does the same on a fresh node with WAMP sessions
on ``/ws`` (each subscribing the same three topics a legacy socket gets), for comparison.

Figures printed: router RSS per connection, router CPU per handshake, and for the fan-out the
deliveries per second and router CPU per delivered message.
"""

import argparse
import os
import re
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet import defer, reactor, task  # noqa: E402

from components.core.tokens import issue_token  # noqa: E402
from tests.support.legacy import connect_legacy  # noqa: E402
from tests.support.nodes import TEST_SECRET, Node  # noqa: E402
from tests.support.wamp import connect  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def router_pid(node: Node) -> int:
    match = re.search(r"\[Router\s+(\d+)\]", node.log_text())
    if not match:
        raise RuntimeError("no router worker line in the node log")
    return int(match.group(1))


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def snapshot(pid: int) -> Dict[str, float]:
    return {"rss": rss_bytes(pid), "cpu": cpu_seconds(pid), "t": time.monotonic()}


@defer.inlineCallbacks
def settle(pid: int, seconds: float = 1.0):
    """Let the router finish what it is doing (and the allocator settle) before a reading."""
    yield task.deferLater(reactor, seconds, lambda: None)
    return snapshot(pid)


@defer.inlineCallbacks
def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        yield task.deferLater(reactor, 0.01, lambda: None)


def mib(n: float) -> str:
    return f"{n / 1024 / 1024:.1f} MiB"


@defer.inlineCallbacks
def fan_out(node: Node, pid: int, publisher, receivers, received, args):
    """Send ``args.messages`` department messages; wait until every receiver has them all."""
    text = "x" * args.size
    before = snapshot(pid)
    client_before = client_cpu()
    started = time.monotonic()
    for i in range(args.messages):
        yield publisher.call("deptcast.send", "bench", f"{i:06d}{text}")
    yield wait_until(lambda: all(len(received(r)) >= args.messages for r in receivers), 600, "fan-out")
    seconds = time.monotonic() - started
    after = snapshot(pid)
    deliveries = args.messages * len(receivers)
    print(f"  fan-out: {args.messages} messages of {args.size + 6} bytes to {len(receivers)} clients = "
          f"{deliveries} deliveries in {seconds:.2f}s ({deliveries / seconds:.0f}/s; "
          f"the benchmark client itself used {client_cpu() - client_before:.2f}s CPU)")
    print(f"  router CPU {after['cpu'] - before['cpu']:.2f}s: "
          f"{(after['cpu'] - before['cpu']) / deliveries * 1e6:.1f} us per delivery")
    expected = [f"{i:06d}{text}" for i in range(args.messages)]
    print(f"  every client got every message once, in order: {all(received(r) == expected for r in receivers)}")


def client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def start_node(name: str) -> Node:
    node = Node(Path(tempfile.mkdtemp(prefix=f"deptcast-bench-{name}-")), name=name,
                env={"DEPTCAST_RATE": "0"})
    return node.start()


@defer.inlineCallbacks
def opened_in_batches(args, make):
    clients: List = []
    client_before = client_cpu()
    started = time.monotonic()
    for first in range(0, args.sockets, args.batch):
        batch = [make(i) for i in range(first, min(first + args.batch, args.sockets))]
        got = yield defer.gatherResults(batch, consumeErrors=True)
        clients.extend(got)
    seconds = time.monotonic() - started
    print(f"  (the benchmark client used {client_cpu() - client_before:.2f}s CPU opening them)")
    return clients, seconds


@defer.inlineCallbacks
def report_open(pid: int, base, n: int, seconds: float, what: str):
    after = yield settle(pid, 2.0)
    print(f"{n} {what} open in {seconds:.2f}s ({n / seconds:.0f}/s)")
    print(f"  router RSS {mib(base['rss'])} -> {mib(after['rss'])}: "
          f"{(after['rss'] - base['rss']) / n / 1024:.1f} KiB per connection")
    print(f"  router CPU {(after['cpu'] - base['cpu']) / n * 1000:.2f} ms per connection")
    idle = yield settle(pid, args_idle[0])
    print(f"  router CPU while idle for {args_idle[0]:.0f}s: {idle['cpu'] - after['cpu']:.2f}s")


args_idle = [10.0]


@defer.inlineCallbacks
def bench_legacy(args) -> None:
    node = start_node("legacy")
    try:
        pid = router_pid(node)
        publisher = yield connect(node.url, issue_token(TEST_SECRET, "bench", "hq", "publisher"))
        base = yield settle(pid)

        def make(i):
            return connect_legacy(node.port, f"bench_u{i}", issue_token(TEST_SECRET, f"u{i}", "bench", ttl=7200),
                                  timeout=60)
        sockets, seconds = yield opened_in_batches(args, make)
        yield report_open(pid, base, len(sockets), seconds, "legacy sockets")
        yield fan_out(node, pid, publisher, sockets, lambda s: s.texts, args)
        for s in sockets:
            s.close()
        yield wait_until(lambda: all(s.close_info is not None for s in sockets), 60, "closes")
        yield publisher.close()
    finally:
        node.stop()


@defer.inlineCallbacks
def bench_wamp(args) -> None:
    node = start_node("wamp")
    try:
        pid = router_pid(node)
        publisher = yield connect(node.url, issue_token(TEST_SECRET, "bench", "hq", "publisher"))
        base = yield settle(pid)

        @defer.inlineCallbacks
        def make(i):
            c = yield connect(node.url, issue_token(TEST_SECRET, f"w{i}", "bench", ttl=7200), timeout=60)
            yield defer.gatherResults([c.listen("deptcast.dept.bench"), c.listen("deptcast.all"),
                                       c.listen(f"deptcast.user.w{i}")])
            return c
        sessions, seconds = yield opened_in_batches(args, make)
        print("for comparison, one WAMP session per client on /ws (what the legacy side avoids):")
        yield report_open(pid, base, len(sessions), seconds, "WAMP sessions with 3 subscriptions each")
        yield fan_out(node, pid, publisher, sessions, lambda c: c.messages("deptcast.dept.bench"), args)
        for c in sessions:
            c.close()
        yield publisher.close()
    finally:
        node.stop()


@defer.inlineCallbacks
def run(args) -> None:
    args_idle[0] = args.idle
    yield bench_legacy(args)
    if args.compare_wamp:
        yield bench_wamp(args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=40,
                        help="sockets opened at once (keep it under the listen backlog, 50)")
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--size", type=int, default=100, help="message size in bytes")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle measurement")
    parser.add_argument("--compare-wamp", action="store_true")
    args = parser.parse_args()
    failures = []

    def go():
        d = run(args)
        d.addErrback(lambda f: failures.append(f) or f.printTraceback())
        d.addBoth(lambda _: reactor.stop())
    reactor.callWhenRunning(go)
    reactor.run()
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
