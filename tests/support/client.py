"""A client engine on fake sessions and a fake clock, for the client's unit tests: a store with
the history rules, sessions on nodes that answer from it, and a harness that delivers into a list."""

from typing import Any, Dict, List, Optional

import txaio
from autobahn.wamp.exception import ApplicationError, TransportLost
from twisted.internet import defer, task

from components.client import errors
from components.client.engine import Engine
from components.core import names
from components.core.recovery import envelope_key
from components.core.targets import parse_target

txaio.use_twisted()  # the engine's futures and loggers are Twisted's here, as in a Twisted program


class FakeStore:
    """The store's history rules (ids in commit order, seq per topic, bounded pages)."""

    def __init__(self) -> None:
        self.rows: List[Dict[str, Any]] = []
        self.seq: Dict[str, int] = {}
        #: per topic, the seq up to which retention removed its messages
        self.floor: Dict[str, int] = {}

    def append(self, to: str, message: str, sender: str = "pat") -> Dict[str, Any]:
        target = parse_target(to)
        self.seq[target.topic] = self.seq.get(target.topic, 0) + 1
        env = {"id": f"{len(self.rows) + 1:016d}", "scope": target.scope, "target": target.target,
               "sender": sender, "sender_dept": "admin", "message": message, "ts": 1,
               "seq": self.seq[target.topic]}
        self.rows.append(env)
        return env

    def prune(self, topic: str, keep: int) -> None:
        """Retention: keep the newest ``keep`` messages of ``topic``."""
        cut = self.seq.get(topic, 0) - keep
        if cut > self.floor.get(topic, 0):
            self.floor[topic] = cut
            self.rows = [e for e in self.rows if envelope_key(e)[0] != topic or e["seq"] > cut]

    def history(self, topics, after=None, limit=100, latest=False, positions=None):
        if positions is not None:
            for topic in positions:
                if topic not in topics:
                    raise ApplicationError(errors.NotAuthorized.URI, "not yours")
            gone = sorted(t for t, seq in positions.items() if seq < self.floor.get(t, 0))
            if gone:
                raise ApplicationError(errors.Pruned.URI, f"removed by retention on {', '.join(gone)}")
            rows = [e for e in self.rows if envelope_key(e)[0] in positions
                    and e["seq"] > positions[envelope_key(e)[0]]]
            return [dict(e) for e in rows[:limit]]
        rows = [e for e in self.rows if envelope_key(e)[0] in topics and (after is None or e["id"] > after)]
        return [dict(e) for e in (rows[-limit:] if latest else rows[:limit])]


class FakeSession:
    """One session on one node: subscriptions, calls answered from the store."""

    def __init__(self, store: FakeStore, user="alice", dept="cardio", node="n1") -> None:
        self.store = store
        self.user, self.dept, self.node = user, dept, node
        self.handlers: Dict[str, Any] = {}
        self.attached = True
        self.calls: List[tuple] = []
        #: errors to raise from the next calls of a procedure, in order
        self.refuse: Dict[str, List[BaseException]] = {}
        #: calls of these procedures wait here until fired by the test
        self.hold: Dict[str, List[defer.Deferred]] = {}

    @property
    def details(self):
        class Details:
            authid = self.user
            authextra = {"dept": self.dept, "x_cb_node": self.node}
        return Details()

    def is_attached(self) -> bool:
        return self.attached

    def subscribe(self, handler, topic):
        self.handlers[topic] = handler
        return defer.succeed(None)

    def call(self, procedure, *args, **kwargs):
        self.calls.append((procedure, args, kwargs))
        if not self.attached:
            raise TransportLost()
        if self.refuse.get(procedure):
            return defer.fail(self.refuse[procedure].pop(0))
        if procedure in self.hold:
            d = defer.Deferred()
            self.hold[procedure].append(d)
            return d
        if procedure == names.PROC_HISTORY:
            return defer.succeed(self.store.history(names.client_topics(self.dept, self.user), **kwargs))
        if procedure == names.PROC_SEND:
            return defer.succeed(self.store.append(*args, sender=self.user))
        raise AssertionError(procedure)

    def event(self, envelope) -> None:
        """The router delivers an event on this session."""
        topic = envelope_key(envelope)[0]
        if topic in self.handlers and self.attached:
            self.handlers[topic](dict(envelope))

    def history_calls(self):
        return [kw for p, _, kw in self.calls if p == names.PROC_HISTORY]


class Harness:
    """An engine on a fake clock, delivering into ``got``."""

    def __init__(self, store: Optional[FakeStore] = None, **kwargs) -> None:
        self.clock = task.Clock()
        self.store = store or FakeStore()
        self.got: List[Dict[str, Any]] = []
        self.engine = Engine(self.got.append, self.clock.seconds, self.clock.callLater, **kwargs)

    def join(self, node="n1", user="alice", dept="cardio") -> FakeSession:
        session = FakeSession(self.store, user, dept, node)
        self.engine.on_join(session, session.details)
        return session

    def lose(self, session: FakeSession) -> None:
        session.attached = False
        self.engine.on_disconnect(session, False)

    def send(self, to: str, message: str, via: List[FakeSession] = (), drop_on=()) -> Dict[str, Any]:
        """Store a message and publish it on the sessions ``via`` (except ``drop_on``)."""
        env = self.store.append(to, message)
        for s in via:
            if s not in drop_on:
                s.event(env)
        return env

    def messages(self) -> List[str]:
        return [e["message"] for e in self.got]
