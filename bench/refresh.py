"""A long session on short tokens: one connection renewed with ``deptcast.session.refresh``.

    .venv/bin/python bench/refresh.py                     # 5 minutes, 10 s tokens (a short run)
    .venv/bin/python bench/refresh.py --hour              # an hour with 60 s tokens
    .venv/bin/python bench/refresh.py --duration 900 --ttl 30

On a fresh 1-node deptcast (SQLite), one listener signs in with a token of ``--ttl`` seconds
and, like the shipped clients, hands the node a newer one at about 80 % of each token's life;
a sender sends to the listener's department every ``--interval`` seconds meanwhile. Reported:
the listener's connections (1 is the goal), renewals, messages sent and received, missing and
duplicated ones (0 is the goal), a ``seq`` gap seen, and how long each renewal call took.

The node is driven only through its outside interfaces (``harness.py``). Results go to
``bench/results/refresh-<date>.json``.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import time
from pathlib import Path
from typing import List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as h
import jwt
from autobahn.twisted.wamp import ApplicationSession
from autobahn.twisted.websocket import WampWebSocketClientFactory
from autobahn.wamp.types import ComponentConfig
from twisted.internet import defer, reactor, task, threads
from twisted.internet.endpoints import TCP4ClientEndpoint

REALM = "deptcast"


def mint(secret: str, user: str, dept: str, role: str, ttl: int) -> str:
    now = int(time.time())
    return jwt.encode({"sub": user, "dept": dept, "role": role, "iat": now, "exp": now + ttl}, secret,
                      algorithm="HS256")


class Session(ApplicationSession):
    def __init__(self, config, token: str, joined: defer.Deferred) -> None:
        super().__init__(config)
        self._token, self._joined = token, joined
        self.left: Optional[str] = None
        self.connections = 0

    def onConnect(self):
        self.connections += 1
        self.join(REALM, authmethods=["ticket"])

    def onChallenge(self, challenge):
        return self._token

    def onJoin(self, details):
        if not self._joined.called:
            self._joined.callback(self)

    def onLeave(self, details):
        self.left = details.reason
        if not self._joined.called:
            self._joined.errback(RuntimeError(f"refused: {details.reason}"))
        super().onLeave(details)


def open_session(port: int, token: str) -> defer.Deferred:
    joined: defer.Deferred = defer.Deferred()
    factory = WampWebSocketClientFactory(lambda: Session(ComponentConfig(realm=REALM), token, joined),
                                         url=f"ws://127.0.0.1:{port}/ws")
    TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(factory).addErrback(
        lambda f: joined.called or joined.errback(f))
    return joined.addTimeout(30, reactor)


@defer.inlineCallbacks
def wait_joinable(port: int, secret: str, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            s = yield open_session(port, mint(secret, "probe", "bench", "member", 60))
            s.leave()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            yield task.deferLater(reactor, 1.0, lambda: None)


@defer.inlineCallbacks
def main(args):
    workdir = h.Workdir(keep=args.keep)
    secret = secrets.token_urlsafe(48)
    node = yield threads.deferToThread(h.start_single_node, args.root, workdir.path, secret)
    state = {"start": h.machine_state()}
    try:
        yield wait_joinable(node.port, secret)
        dept = f"refresh-{secrets.token_hex(3)}"
        listener = yield open_session(node.port, mint(secret, "lena", dept, "member", args.ttl))
        got: List[dict] = []
        yield listener.subscribe(lambda envelope, *a, **k: got.append(envelope), f"deptcast.dept.{dept}")
        sender = yield open_session(node.port, mint(secret, "pat", "ops", "publisher", 4 * 3600))
        sent: List[str] = []
        call_ms: List[float] = []
        refused: List[str] = []
        started = time.monotonic()
        next_refresh = started + 0.8 * args.ttl
        while time.monotonic() - started < args.duration and listener.left is None:
            envelope = yield sender.call("deptcast.send", dept, f"m{len(sent)}")
            sent.append(envelope["id"])
            if time.monotonic() >= next_refresh:
                t0 = time.monotonic()
                try:
                    answer = yield listener.call("deptcast.session.refresh",
                                                 mint(secret, "lena", dept, "member", args.ttl))
                    call_ms.append((time.monotonic() - t0) * 1000)
                    next_refresh = time.monotonic() + 0.8 * (answer["exp"] - time.time())
                except Exception as e:
                    refused.append(str(e))
                    next_refresh = time.monotonic() + 1.0
            yield task.deferLater(reactor, args.interval, lambda: None)
        yield task.deferLater(reactor, 2.0, lambda: None)   # the last deliveries
        ids = [e["id"] for e in got]
        seqs = [e["seq"] for e in got]
        result = {
            "duration_s": round(time.monotonic() - started, 1), "ttl_s": args.ttl,
            "connections": listener.connections, "ended": listener.left,
            "renewals": len(call_ms), "refused_renewals": refused[:5],
            "sent": len(sent), "received": len(got), "missing": len(set(sent) - set(ids)),
            "duplicates": len(ids) - len(set(ids)),
            "seq_gaps": sum(1 for a, b in zip(seqs, seqs[1:]) if b != a + 1),
            "refresh_ms_median": round(statistics.median(call_ms), 2) if call_ms else None,
            "refresh_ms_max": round(max(call_ms), 2) if call_ms else None,
        }
        print(json.dumps(result), flush=True)
        listener.leave()
        sender.leave()
    finally:
        yield threads.deferToThread(node.stop)
        workdir.cleanup()
    state["end"] = h.machine_state()
    out = h.BENCH / "results" / f"refresh-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "state": state,
                               "result": result}, indent=1))
    print(f"wrote {out}", flush=True)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=300.0, help="seconds the session lives (default 300)")
    p.add_argument("--ttl", type=int, default=10, help="each token's lifetime in seconds (default 10)")
    p.add_argument("--hour", action="store_true", help="an hour with 60 s tokens (--duration 3600 --ttl 60)")
    p.add_argument("--interval", type=float, default=0.5, help="seconds between two sends (default 0.5)")
    p.add_argument("--root", type=Path, default=h.REPO, help="the checkout to measure (its .venv)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    args = p.parse_args(argv)
    if args.hour:
        args.duration, args.ttl = 3600.0, 60
    return args


if __name__ == "__main__":
    h.stop_cleanly_on_signals()
    task.react(lambda _reactor: main(parse_args()))
