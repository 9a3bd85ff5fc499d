"""What hostile or slow clients cost a node: this checkout beside a baseline checkout.

    scripts/bench bounds [--baseline /work/main] [--only hello,malformed,slow,deaf]

* ``hello``: 30 connections to ``/ws``, each sending one HELLO of 420 KB (``authextra``
  holding 140,000 empty lists, depth 2) before any token: the router worker's CPU seconds.
* ``malformed``: 200 connections, each sending one malformed HELLO: lines added to the node's
  log (counted 12 s after the last, so that the summaries are in).
* ``slow``: 40 subscribers that never read (4 KiB receive buffers) and one that reads, while
  1,000 messages of 60 KB (60 MB per subscriber) go to their department: the router's peak
  memory, the reading subscriber's latency (p50, p99, max) and how many non-readers were closed.
* ``deaf``: 40 signed-in clients that send a tiny frame every 50 ms and never read, for 45 s:
  how many are still connected at the end (pings are every 20 s, answered within 10 s).

Only outside interfaces are used (WebSocket frames written by hand, ``/metrics``, ``/proc``):
the same script measures any checkout.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import socket
import statistics
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness

REALM = "deptcast"
HELLO, WELCOME, CHALLENGE, AUTHENTICATE = 1, 2, 4, 5
SUBSCRIBE, SUBSCRIBED, EVENT, CALL, RESULT, ERROR, PUBLISH = 32, 33, 36, 48, 50, 8, 16


# ----------------------------------------------------------------------------- a raw client

def _mask(payload: bytes) -> bytes:
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x81])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    key = (mask * (n // 4 + 1))[:n]
    body = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big") if n else b""
    return head + mask + body


class Raw:
    def __init__(self, port: int, rcvbuf: Optional[int] = None, timeout: float = 30.0) -> None:
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                           "Sec-WebSocket-Protocol: wamp.2.json\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            head += chunk
        assert b" 101 " in head.split(b"\r\n", 1)[0], head
        self.buf = head.split(b"\r\n\r\n", 1)[1]
        self.req = 0

    def send(self, msg: Any) -> None:
        self.sock.sendall(_mask(json.dumps(msg).encode()))

    def send_raw(self, payload: bytes) -> None:
        self.sock.sendall(_mask(payload))

    def frame(self) -> Optional[tuple]:
        """The next frame ``(opcode, payload)``; ``None`` once the connection is closed."""
        while True:
            b = self.buf
            if len(b) >= 2:
                n, j = b[1] & 0x7F, 2
                if n == 126 and len(b) >= 4:
                    n, j = struct.unpack("!H", b[2:4])[0], 4
                elif n == 127 and len(b) >= 10:
                    n, j = struct.unpack("!Q", b[2:10])[0], 10
                if n < 126 or j > 2:
                    if len(b) >= j + n:
                        self.buf = b[j + n:]
                        op, payload = b[0] & 0x0F, b[j:j + n]
                        if op == 0x9:
                            self.sock.sendall(bytes([0x8A, 0x80 | len(payload)]) + b"\0\0\0\0" + payload)
                            continue
                        return op, payload
            try:
                chunk = self.sock.recv(1 << 20)
            except (ConnectionError, socket.timeout):
                return None
            if not chunk:
                return None
            self.buf += chunk

    def message(self) -> Any:
        while True:
            f = self.frame()
            if f is None or f[0] == 0x8:
                return None
            if f[0] in (0x1, 0x2):
                return json.loads(f[1])

    def join(self, token: str) -> None:
        self.send([HELLO, REALM, {"roles": {"subscriber": {}, "caller": {}, "publisher": {}},
                                  "authmethods": ["ticket"]}])
        assert self.message()[0] == CHALLENGE
        self.send([AUTHENTICATE, token, {}])
        assert self.message()[0] == WELCOME

    def subscribe(self, topic: str) -> None:
        self.req += 1
        self.send([SUBSCRIBE, self.req, {}, topic])
        assert self.message()[0] == SUBSCRIBED

    def close(self) -> None:
        self.sock.close()


# ----------------------------------------------------------------------------- the node

def router_pid(node: harness.DeptcastNode) -> int:
    for pid in node.pids():
        if harness.process_label(pid).startswith("router"):
            return pid
    raise RuntimeError("no router worker")


def router_cpu(pid: int) -> float:
    return harness.cpu_ticks([pid])[pid] / harness.CLK_TCK


def wait_serving(node: harness.DeptcastNode, secret: str, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        node.check_alive()
        try:
            c = Raw(node.port, timeout=5)
            c.join(harness.mint(secret, "probe", "probe"))
            c.close()
            return
        except (OSError, AssertionError, TypeError):
            time.sleep(0.5)
    raise RuntimeError("the node did not serve in time")


def metric(port: int, name: str) -> float:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    body = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    s.close()
    total = 0.0
    for line in body.decode(errors="replace").splitlines():
        if line.startswith(name):
            total += float(line.rsplit(" ", 1)[1])
    return total


# ----------------------------------------------------------------------------- scenarios

def hello(node, secret) -> Dict[str, Any]:
    pid = router_pid(node)
    big = json.dumps([HELLO, REALM, {"roles": {"subscriber": {}}, "authmethods": ["ticket"],
                                     "authextra": {"x": [[]] * 140_000}}], separators=(",", ":")).encode()
    time.sleep(2)
    before = router_cpu(pid)
    started = time.monotonic()
    clients = []
    for _ in range(30):
        c = Raw(node.port)
        try:
            c.send_raw(big)
        except ConnectionError:
            pass
        clients.append(c)
    answers: Dict[str, int] = {}
    for c in clients:
        f = c.frame()  # a CHALLENGE (parsed) or a close (refused before parsing)
        kind = "closed" if f is None or f[0] == 0x8 else "answered"
        answers[kind] = answers.get(kind, 0) + 1
        c.close()
    wall = time.monotonic() - started
    time.sleep(1)
    return {"hello_bytes": len(big), "router_cpu_s": round(router_cpu(pid) - before, 3), "wall_s": round(wall, 2),
            "answers": answers}


def malformed(node, secret) -> Dict[str, Any]:
    time.sleep(12)  # the summaries of earlier refusals are out
    lines_before = len(node.log_path.read_text(errors="replace").splitlines())
    started = time.monotonic()
    for i in range(200):
        c = Raw(node.port)
        c.send([HELLO, REALM, [i]])
        c.frame()
        c.close()
    wall = time.monotonic() - started
    time.sleep(12)
    added = len(node.log_path.read_text(errors="replace").splitlines()) - lines_before
    return {"connections": 200, "log_lines_added": added, "wall_s": round(wall, 2)}


def slow(node, secret, readers: int = 40, messages: int = 1000, size: int = 60_000) -> Dict[str, Any]:
    pid = router_pid(node)
    dept = "slow" + secrets.token_hex(3)
    deaf = []
    for i in range(readers):
        c = Raw(node.port, rcvbuf=4096)
        c.join(harness.mint(secret, f"deaf{i}", dept))
        c.subscribe(f"deptcast.dept.{dept}")
        deaf.append(c)
    reader = Raw(node.port)
    reader.join(harness.mint(secret, "reader", dept))
    reader.subscribe(f"deptcast.dept.{dept}")
    sender = Raw(node.port)
    sender.join(harness.mint(secret, "sender", dept, "publisher"))
    closed_before = metric(node.port, 'deptcast_connections_closed_total{reason="slow_reader"}')
    rss_base = harness.rss_bytes([pid])
    peak = [rss_base]
    latencies: List[float] = []
    done = threading.Event()

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], harness.rss_bytes([pid]))
            if peak[0] > 4 * 1024 ** 3:
                print("  router above 4 GiB: stopping the burst", file=sys.stderr)
                os._exit(3)
            time.sleep(0.1)

    def read():
        got = 0
        while got < messages:
            m = reader.message()
            if m is None:
                break
            if m[0] == EVENT:
                sent = float(m[4][0]["message"].split(" ", 1)[0])
                latencies.append(time.time() - sent)
                got += 1

    threads = [threading.Thread(target=watch, daemon=True), threading.Thread(target=read, daemon=True)]
    for t in threads:
        t.start()
    started = time.monotonic()
    pad = "x" * size
    in_flight = 0
    sent = answered = 0
    while answered < messages:
        while sent < messages and in_flight < 16:
            sent += 1
            sender.send([CALL, sent, {}, "deptcast.send", [dept, f"{time.time():.6f} {pad}"], {}])
            in_flight += 1
        m = sender.message()
        if m is None:
            raise RuntimeError("the sender was disconnected")
        if m[0] in (RESULT, ERROR):
            answered += 1
            in_flight -= 1
    threads[1].join(120)
    wall = time.monotonic() - started
    time.sleep(2)
    done.set()
    rss_end = harness.rss_bytes([pid])
    closed = metric(node.port, 'deptcast_connections_closed_total{reason="slow_reader"}') - closed_before
    for c in deaf + [reader, sender]:
        c.close()
    lat = sorted(latencies)
    q = (lambda p: round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 1)) if lat else (lambda p: None)
    return {"non_readers": readers, "burst_mb_per_client": round(messages * size / 1e6), "wall_s": round(wall, 1),
            "router_rss_mb": {"before": round(rss_base / 2 ** 20), "peak": round(peak[0] / 2 ** 20),
                              "after": round(rss_end / 2 ** 20)},
            "reader_got": len(lat), "reader_latency_ms": {"p50": q(0.5), "p99": q(0.99),
                                                          "max": round(lat[-1] * 1000, 1) if lat else None,
                                                          "mean": round(statistics.mean(lat) * 1000, 1)
                                                          if lat else None},
            "non_readers_closed": closed}


def deaf(node, secret, clients: int = 40, seconds: float = 45.0) -> Dict[str, Any]:
    pid = router_pid(node)
    dept = "deaf" + secrets.token_hex(3)
    conns = []
    for i in range(clients):
        c = Raw(node.port, rcvbuf=4096)
        c.join(harness.mint(secret, f"deaf{i}", dept))
        conns.append(c)
    before = router_cpu(pid)
    rss_base = harness.rss_bytes([pid])
    alive = set(range(clients))
    end = time.monotonic() + seconds
    frame = _mask(json.dumps([PUBLISH, 1, {}, f"deptcast.dept.{dept}", ["x"]]).encode())
    while time.monotonic() < end and alive:
        for i in list(alive):
            try:
                conns[i].sock.sendall(frame)
            except (OSError, socket.timeout):
                alive.discard(i)
        time.sleep(0.05)
    result = {"clients": clients, "seconds": seconds, "still_connected": len(alive),
              "router_cpu_s": round(router_cpu(pid) - before, 2),
              "router_rss_mb": {"before": round(rss_base / 2 ** 20),
                                "after": round(harness.rss_bytes([pid]) / 2 ** 20)}}
    for c in conns:
        c.close()
    return result


SCENARIOS = {"hello": hello, "malformed": malformed, "slow": slow, "deaf": deaf}


def run(root: Path, only: List[str], workdir: Path) -> Dict[str, Any]:
    secret = secrets.token_hex(32)
    node = harness.start_single_node(root, workdir, secret, name=f"bounds-{root.name}")
    try:
        harness.wait_port(node.port, 90, node.proc)
        wait_serving(node, secret)
        out = {}
        for name in only:
            print(f"  {root}: {name} ...", file=sys.stderr, flush=True)
            out[name] = SCENARIOS[name](node, secret)
            print(f"    {json.dumps(out[name])}", file=sys.stderr, flush=True)
        return out
    finally:
        node.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, default=None, help="another checkout to measure beside this one")
    parser.add_argument("--only", default="hello,malformed,slow,deaf")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    harness.stop_cleanly_on_signals()
    only = [s for s in args.only.split(",") if s]
    workdir = harness.Workdir(keep=args.keep)
    try:
        result = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": harness.machine_state()}
        for label, root in (("baseline", args.baseline), ("this", harness.REPO)):
            if root is not None:
                result[label] = {"root": str(root), **run(Path(root), only, workdir.path)}
        print(json.dumps(result, indent=2))
    finally:
        workdir.cleanup()


if __name__ == "__main__":
    main()
