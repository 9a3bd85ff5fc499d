"""Time to the last closed session after a revoke, on a cluster (3 nodes by default).

    .venv/bin/python bench/revoke.py                       # 5 revokes, 20 sessions per node each
    .venv/bin/python bench/revoke.py --runs 10 --sessions 50 --via wamp
    .venv/bin/python bench/revoke.py --root /other/checkout

``deptcast cluster init`` + ``crossbar start`` for each node, sharing a PostgreSQL schema of its
own. Per run a fresh user signs in ``--sessions`` times on every node (WAMP sessions,
subscribed to its department); an ``admin`` token revokes it through node 1 (``POST
/api/revoke``, or ``deptcast.admin.revoke`` with ``--via wamp``). Measured from the moment the
request is sent: when the revoke was answered, and when each session got its GOODBYE
(``deptcast.close.revoked``): the first, the median and the last. The goal is the last one
under 2 s. The nodes learn a revocation from the store (each polls it about every 0.5 s), so
the sessions on node 1 end first.

The cluster is driven only through its outside interfaces (``harness.py``); results go to
``bench/results/revoke-<date>.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as h
from autobahn.twisted.wamp import ApplicationSession
from autobahn.twisted.websocket import WampWebSocketClientFactory
from autobahn.wamp.types import ComponentConfig
from twisted.internet import defer, reactor, task, threads
from twisted.internet.endpoints import TCP4ClientEndpoint

REALM = "deptcast"
REVOKED = "deptcast.close.revoked"


class Session(ApplicationSession):
    """One signed-in user session; notes when and why it ended."""

    def __init__(self, config, token: str, joined: defer.Deferred, topic: str) -> None:
        super().__init__(config)
        self._token, self._joined, self._topic = token, joined, topic
        self.ended_at: Optional[float] = None
        self.reason: Optional[str] = None

    def onConnect(self):
        self.join(REALM, authmethods=["ticket"])

    def onChallenge(self, challenge):
        return self._token

    @defer.inlineCallbacks
    def onJoin(self, details):
        yield self.subscribe(lambda *a, **k: None, self._topic)
        if not self._joined.called:
            self._joined.callback(self)

    def onLeave(self, details):
        if self.ended_at is None:
            self.ended_at = time.monotonic()
            self.reason = details.reason
        if not self._joined.called:
            self._joined.errback(RuntimeError(f"refused: {details.reason} {details.message}"))
        super().onLeave(details)


def open_session(port: int, token: str, topic: str, timeout: float = 30.0) -> defer.Deferred:
    joined: defer.Deferred = defer.Deferred()
    factory = WampWebSocketClientFactory(lambda: Session(ComponentConfig(realm=REALM), token, joined, topic),
                                         url=f"ws://127.0.0.1:{port}/ws")
    TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(factory).addErrback(
        lambda f: joined.called or joined.errback(f))
    return joined.addTimeout(timeout, reactor)


@defer.inlineCallbacks
def wait_joinable(port: int, secret: str, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            s = yield open_session(port, h.mint(secret, "probe", "bench"), "deptcast.all", 5)
            s.leave()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            yield task.deferLater(reactor, 1.0, lambda: None)


def post_revoke(port: int, admin: str, key: str) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/revoke", data=json.dumps({"user_key": key}).encode(),
                                 headers={"Authorization": f"Bearer {admin}", "Content-Type": "application/json"},
                                 method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


@defer.inlineCallbacks
def one_run(args, cluster: h.DeptcastCluster, admin_session, i: int):
    user, dept = f"u{i}-{int(time.time())}", "bench"
    sessions: List[Session] = []
    for node in cluster.nodes:
        opened = yield defer.gatherResults(
            [open_session(node.port, h.mint(cluster.secret, user, dept), f"deptcast.dept.{dept}")
             for _ in range(args.sessions)], consumeErrors=True)
        sessions.extend(opened)
    yield task.deferLater(reactor, args.settle, lambda: None)
    key = f"{dept}_{user}"
    admin = h.mint(cluster.secret, "bench-admin", "ops", "admin")
    started = time.monotonic()
    if args.via == "wamp":
        yield admin_session.call("deptcast.admin.revoke", key)
    else:
        yield threads.deferToThread(post_revoke, cluster.nodes[0].port, admin, key)
    answered = time.monotonic() - started
    deadline = started + args.timeout
    while any(s.ended_at is None for s in sessions) and time.monotonic() < deadline:
        yield task.deferLater(reactor, 0.01, lambda: None)
    ends = sorted(s.ended_at - started for s in sessions if s.ended_at is not None)
    per_node: Dict[str, float] = {}
    for n, node in enumerate(cluster.nodes):
        mine = [s.ended_at - started for s in sessions[n * args.sessions:(n + 1) * args.sessions]
                if s.ended_at is not None]
        per_node[node.name] = round(max(mine), 3) if mine else None
    result = {"run": i, "sessions": len(sessions), "ended": len(ends),
              "revoked_reason": sum(1 for s in sessions if s.reason == REVOKED),
              "answered_s": round(answered, 3), "first_s": round(ends[0], 3) if ends else None,
              "median_s": round(statistics.median(ends), 3) if ends else None,
              "last_s": round(ends[-1], 3) if len(ends) == len(sessions) else None, "last_per_node_s": per_node}
    print(json.dumps(result), flush=True)
    return result


@defer.inlineCallbacks
def main(args):
    workdir = h.Workdir(keep=args.keep)
    cluster = None
    results = []
    state = {"start": h.machine_state()}
    try:
        cluster = yield threads.deferToThread(h.DeptcastCluster, args.root, workdir.path, args.pg, args.nodes)
        for node in cluster.nodes:
            yield wait_joinable(node.port, cluster.secret)
        admin_session = yield open_session(cluster.nodes[0].port,
                                           h.mint(cluster.secret, "bench-admin", "ops", "admin"), "deptcast.all")
        for i in range(args.runs):
            results.append((yield one_run(args, cluster, admin_session, i)))
        admin_session.leave()
    finally:
        if cluster is not None:
            yield threads.deferToThread(cluster.stop)
        workdir.cleanup()
    state["end"] = h.machine_state()
    lasts = [r["last_s"] for r in results if r["last_s"] is not None]
    summary = {"runs": len(results), "complete": len(lasts),
               "last_s_range": [min(lasts), max(lasts)] if lasts else None,
               "last_s_median": round(statistics.median(lasts), 3) if lasts else None}
    print(json.dumps({"summary": summary}), flush=True)
    out = h.BENCH / "results" / f"revoke-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "machine": h.machine_info(args.root),
                               "state": state, "runs": results, "summary": summary}, indent=1))
    print(f"wrote {out}", flush=True)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5, help="revokes, each of a fresh user (default 5)")
    p.add_argument("--sessions", type=int, default=20, help="the user's sessions on each node (default 20)")
    p.add_argument("--nodes", type=int, default=3, help="cluster nodes (default 3)")
    p.add_argument("--via", choices=("http", "wamp"), default="http", help="POST /api/revoke or deptcast.admin.revoke")
    p.add_argument("--settle", type=float, default=1.0, help="seconds between the sign-ins and the revoke")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for every session to end")
    p.add_argument("--root", type=Path, default=h.REPO, help="the checkout to measure (its .venv)")
    p.add_argument("--pg", default=h.PG_URL, help="PostgreSQL base URL (a schema is made and dropped)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    return p.parse_args(argv)


if __name__ == "__main__":
    h.stop_cleanly_on_signals()
    task.react(lambda _reactor: main(parse_args()))
