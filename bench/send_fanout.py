"""Benchmark: ``deptcast.send`` throughput and fan-out to WAMP subscribers on one real node.

Starts a node (SQLite store, rate limit off) in a temp directory, connects SUBSCRIBERS
sessions to one department, sends MESSAGES messages with WINDOW calls in flight, and reports
accepted sends per second, event deliveries per second and the send-to-delivery latency.

    .venv/bin/python bench/send_fanout.py [--subscribers 50] [--messages 2000] [--window 20]

The subscribers run in this process, so on a 2-core machine client and router share the CPU:
read the figures as a floor, and compare runs on the same machine only.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet import defer, reactor, task  # noqa: E402

from components.core.tokens import issue_token  # noqa: E402
from tests.support.nodes import TEST_SECRET, Node  # noqa: E402
from tests.support.wamp import connect, wait_for  # noqa: E402


@defer.inlineCallbacks
def run(args, node: Node):
    dept = "bench"
    latencies = []
    received = [0]

    def on_event(envelope):
        received[0] += 1
        latencies.append(time.time() * 1000 - envelope["ts"])

    subscribers = []
    for i in range(args.subscribers):
        c = yield connect(node.url, issue_token(TEST_SECRET, f"sub{i}", dept))
        yield c.subscribe(on_event, f"deptcast.dept.{dept}")
        subscribers.append(c)
    sender = yield connect(node.url, issue_token(TEST_SECRET, "sender", dept, "publisher"))
    print(f"{args.subscribers} subscribers connected; sending {args.messages} messages "
          f"({args.window} in flight) ...", flush=True)

    expected = args.messages * args.subscribers
    started = time.perf_counter()
    sem = defer.DeferredSemaphore(args.window)
    sends = [sem.run(sender.call, "deptcast.send", dept, f"message {i}") for i in range(args.messages)]
    yield defer.gatherResults(sends, consumeErrors=True)
    sent_at = time.perf_counter()
    yield wait_for(lambda: received[0] >= expected, timeout=600, what="all deliveries")
    done = time.perf_counter()

    send_s, total_s = sent_at - started, done - started
    latencies.sort()
    print(f"accepted sends:   {args.messages / send_s:9.0f} /s  ({args.messages} in {send_s:.2f} s)")
    print(f"deliveries:       {expected / total_s:9.0f} /s  ({expected} in {total_s:.2f} s)")
    print(f"latency ms:       p50 {statistics.median(latencies):.0f}  "
          f"p99 {latencies[int(len(latencies) * 0.99) - 1]:.0f}  max {latencies[-1]:.0f}")
    for c in subscribers + [sender]:
        yield c.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=50)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--window", type=int, default=20)
    args = parser.parse_args()
    node = Node(Path(tempfile.mkdtemp(prefix="deptcast-bench-")), name="bench", env={"DEPTCAST_RATE": "0"})
    print(f"starting a node in {node.node_dir} ...", flush=True)
    node.start()
    status = []

    def finish(result):
        status.append(result)
        node.stop()
        reactor.stop()

    d = run(args, node)
    d.addBoth(finish)
    reactor.run()
    if status and hasattr(status[0], "printTraceback"):
        status[0].printTraceback()
        sys.exit(1)


if __name__ == "__main__":
    main()
