"""The shared recovery vectors (``tests/vectors/recovery.json``, read by the browser client's
tests too) run through the Python client: its engine on a scripted session and a fake clock,
with the rules of ``components.core.recovery``. Every case must give the same history
requests, the same deliveries in the same order, and the same positions."""

import json
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest
import txaio
from autobahn.wamp.exception import ApplicationError, TransportLost
from twisted.internet import defer, task

from components.client.engine import Engine
from components.core import names
from components.core.recovery import GAP_GRACE, envelope_key
from tests.support.client import FakeSession, FakeStore

txaio.use_twisted()  # the engine's futures and loggers are Twisted's here, as in a Twisted program

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "recovery.json"
USER, DEPT = "alice", "cardio"

pytestmark = pytest.mark.skipif(not VECTORS.exists(),
                                reason=f"{VECTORS} is not here (it comes from the web client's branch)")


def _cases() -> List[Dict[str, Any]]:
    if not VECTORS.exists():
        return []
    data = json.loads(VECTORS.read_text())
    assert data["topics"] == list(names.client_topics(DEPT, USER)), "the vectors are for cardio_alice"
    return data["cases"]


class Stored:
    """The saved position a case starts from."""

    def __init__(self, positions: Optional[Dict[str, int]]) -> None:
        self.positions = positions

    def load(self):
        return None if self.positions is None else (names.user_key(DEPT, USER), dict(self.positions))

    def save(self, user, positions) -> None:
        pass


class ScriptedSession(FakeSession):
    """A session of cardio_alice whose history calls wait for the case's ``answer`` steps."""

    def __init__(self, requests: List[Dict[str, Any]], pending: List[defer.Deferred]) -> None:
        super().__init__(FakeStore(), user=USER, dept=DEPT)
        self.requests = requests
        self.pending = pending

    def call(self, procedure, *args, **kwargs):
        assert procedure == names.PROC_HISTORY and not args, (procedure, args)
        # each client chooses its own limit: compare the keys the vectors name
        self.requests.append({k: v for k, v in kwargs.items() if k in ("latest", "positions")})
        d = defer.Deferred()
        self.pending.append(d)
        return d


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c["name"][:70])
def test_vector(case):
    clock = task.Clock()
    delivered: List[str] = []
    # the browser's first visit (the newest page shown, quiet topics read from the start):
    # the vectors describe that one; a backend's default starts from now (see the README).
    # The vectors script history calls only: no acknowledgements here (test_receipts has them)
    engine = Engine(lambda e: delivered.append(e["id"]), clock.seconds, clock.callLater,
                    state=Stored(case["stored"]), first_start="page", acknowledge=False)
    requests: List[Dict[str, Any]] = []
    pending: List[defer.Deferred] = []
    session: Optional[ScriptedSession] = None
    for i, step in enumerate(case["steps"]):
        if step["do"] == "join":
            session = ScriptedSession(requests, pending)
            engine.on_join(session, session.details)
        elif step["do"] == "event":
            topic = envelope_key(step["envelope"])[0]
            session.handlers[topic](dict(step["envelope"]))
        elif step["do"] == "answer":
            assert pending, f"the client asked nothing to answer (requests so far: {requests})"
            if "error" in step:
                extra = {"retry_after": step["retry_after"]} if "retry_after" in step else {}
                pending.pop(0).errback(ApplicationError(step["error"], f"refused: {step['error']}", **extra))
            else:
                pending.pop(0).callback([dict(e) for e in step["envelopes"]])
        elif step["do"] == "grace":
            clock.advance(GAP_GRACE)
        elif step["do"] == "wait":
            clock.advance(step["seconds"])
        elif step["do"] == "disconnect":
            session.attached = False
            engine.on_disconnect(session, False)
            while pending:
                pending.pop(0).errback(TransportLost())
        else:
            raise AssertionError(f"unknown step {step['do']!r}")
        clock.advance(0)  # let the client run until it waits for something again
        if "asked" in step:
            assert len(requests) == step["asked"], f"history calls after step {i}: {requests}"
    assert engine.fatal is None, engine.fatal
    assert requests == case["requests"]
    assert delivered == case["delivered"]
    assert engine.recovery.positions() == case["positions"]
