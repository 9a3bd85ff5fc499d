"""A client engine on fake sessions and a fake clock, for the client's unit tests: a store with
the history rules and keyed sends, sessions on nodes that answer from it (and record what the
client acknowledges and renews), and a harness that delivers into a list."""

from typing import Any, Dict, List, Optional

import txaio
from autobahn.wamp.exception import ApplicationError, TransportLost
from autobahn.wamp.types import CloseDetails
from twisted.internet import defer, task

from components.client import contract, errors
from components.client.connector import Connector
from components.client.engine import Engine
from components.client.renewal import claims_of
from components.client.tx import Session
from components.core import names
from components.core.recovery import envelope_key
from components.core.targets import parse_target

txaio.use_twisted()  # the engine's futures and loggers are Twisted's here, as in a Twisted program

#: where the harness's clock starts (2026-01-01): a plausible time for tokens' ``iat`` and ``exp``
EPOCH = 1767225600


class FakeStore:
    """The store's history rules (ids in commit order, seq per topic, bounded pages)."""

    def __init__(self) -> None:
        self.rows: List[Dict[str, Any]] = []
        self.seq: Dict[str, int] = {}
        #: per topic, the seq up to which retention removed its messages
        self.floor: Dict[str, int] = {}
        #: (sender, key): (to, message, the first envelope)
        self.keys: Dict[tuple, tuple] = {}

    def send(self, to: str, message: str, sender: str = "pat", key: Optional[str] = None,
             sender_dept: str = "admin") -> Dict[str, Any]:
        """``deptcast.send``: the first envelope again for a key seen before."""
        if key is not None and (sender, key) in self.keys:
            first_to, first_message, envelope = self.keys[(sender, key)]
            if (first_to, first_message) != (to, message):
                raise ApplicationError(errors.InvalidFrame.URI, "the key was used for another notice")
            return dict(envelope)
        envelope = self.append(to, message, sender, sender_dept)
        if key is not None:
            self.keys[(sender, key)] = (to, message, dict(envelope))
        return envelope

    def append(self, to: str, message: str, sender: str = "pat", sender_dept: str = "admin") -> Dict[str, Any]:
        target = parse_target(to)
        self.seq[target.topic] = self.seq.get(target.topic, 0) + 1
        env = {"id": f"{len(self.rows) + 1:016d}", "scope": target.scope, "target": target.target,
               "sender": sender, "sender_dept": sender_dept, "message": message, "ts": 1,
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

    def __init__(self, store: FakeStore, user="alice", dept="cardio", node="n1", exp=None) -> None:
        self.store = store
        self.user, self.dept, self.node = user, dept, node
        #: the session's end the node tells in WELCOME's authextra (``None``: it does not)
        self.exp = exp
        self.handlers: Dict[str, Any] = {}
        self.attached = True
        self.calls: List[tuple] = []
        #: errors to raise from the next calls of a procedure, in order
        self.refuse: Dict[str, List[BaseException]] = {}
        #: calls of these procedures wait here until fired by the test
        self.hold: Dict[str, List[defer.Deferred]] = {}
        #: procedures this node does not offer (the router answers no_such_procedure)
        self.missing: set = set()
        #: answers of other procedures: a value, or a function of the call's arguments
        self.answers: Dict[str, Any] = {}
        self.left: List[str] = []

    @property
    def details(self):
        class Details:
            authid = self.user
            authextra = {"dept": self.dept, "x_cb_node": self.node,
                         **({} if self.exp is None else {"exp": self.exp})}
        return Details()

    def is_attached(self) -> bool:
        return self.attached

    def subscribe(self, handler, topic):
        if self.refuse.get(topic):
            return defer.fail(self.refuse[topic].pop(0))
        self.handlers[topic] = handler
        return defer.succeed(None)

    def leave(self, reason="wamp.close.normal"):
        self.left.append(reason)
        self.attached = False

    def call(self, procedure, *args, **kwargs):
        self.calls.append((procedure, args, kwargs))
        if not self.attached:
            raise TransportLost()
        if procedure in self.missing:
            return defer.fail(ApplicationError(contract.NO_SUCH_PROCEDURE, "no callee registered"))
        if self.refuse.get(procedure):
            return defer.fail(self.refuse[procedure].pop(0))
        if procedure in self.hold:
            d = defer.Deferred()
            self.hold[procedure].append(d)
            return d
        try:
            return defer.succeed(self._answer(procedure, *args, **kwargs))
        except ApplicationError as e:
            return defer.fail(e)

    def _answer(self, procedure, *args, **kwargs):
        if procedure in self.answers:
            answer = self.answers[procedure]
            return answer(*args, **kwargs) if callable(answer) else answer
        if procedure == names.PROC_HISTORY:
            return self.store.history(names.client_topics(self.dept, self.user), **kwargs)
        if procedure == names.PROC_SEND:
            return self.store.send(*args, sender=self.user, key=kwargs.get("key"), sender_dept=self.dept)
        if procedure == contract.PROC_SEND_BATCH:
            results = []
            for item in args[0]:
                try:
                    results.append(self.store.send(item["to"], item["message"], sender=self.user, key=item["key"],
                                                   sender_dept=self.dept))
                except ApplicationError as e:
                    results.append({"error": e.error, "detail": e.args[0]})
            return results
        if procedure == contract.PROC_ACK:
            return None
        if procedure == contract.PROC_SESSION_REFRESH:
            return {"exp": claims_of(args[0])["exp"]}
        raise AssertionError(procedure)

    def acks(self, state: Optional[str] = None) -> List[List[str]]:
        """The ids of each deptcast.ack call (of ``state``), in order."""
        return [list(a[0]) for p, a, _ in self.calls if p == contract.PROC_ACK and (state is None or a[1] == state)]

    def calls_of(self, procedure: str) -> List[tuple]:
        return [(a, kw) for p, a, kw in self.calls if p == procedure]

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
        self.clock.advance(EPOCH)  # tokens expire at seconds since the epoch: the clock is one too
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


class FakeTransport:
    """Autobahn's transport as far as the back-off goes: ``reset`` puts its attempts to 0."""

    def __init__(self, attempts: int = 3) -> None:
        self.connect_attempts = attempts
        self.gave_up = False

    def reset(self) -> None:
        self.connect_attempts = 0

    def failed(self) -> None:
        """Autobahn tries it no more."""
        self.gave_up = True


class FakeComponent:
    """Records what the Connector gives Autobahn's Component."""

    instances: List["FakeComponent"] = []

    def __init__(self, transports, realm, authentication, is_fatal, session_factory):
        self.transports, self.realm, self.authentication, self.is_fatal = transports, realm, authentication, is_fatal
        self.session_factory = session_factory
        self.handlers: Dict[str, Any] = {}
        self.starts = 0
        self.done = defer.Deferred()
        self._session = None
        self._delay_f = None
        #: two transports that have been tried before
        self._transports = [FakeTransport(), FakeTransport()]
        FakeComponent.instances.append(self)

    def on(self, event, handler):
        self.handlers[event] = handler

    def start(self, loop=None):
        self.starts += 1
        self.done = defer.Deferred()
        return self.done

    def stop(self):
        if not self.done.called:
            self.done.callback(None)
        return defer.succeed(None)


class Connected(Harness):
    """A :class:`Harness` whose sessions come through a real
    :class:`~components.client.connector.Connector` on a :class:`FakeComponent`: the token
    provider is asked at each sign-in, renewals run on the fake clock (the wall clock too)."""

    def __init__(self, token, store: Optional[FakeStore] = None, urls=("ws://a/ws",), **kwargs) -> None:
        super().__init__(store, **kwargs)
        self.connector = Connector(FakeComponent, Session, list(urls), token, self.engine, self.clock.callLater,
                                   wall=self.clock.seconds)
        self.connector.start()
        self.component: FakeComponent = self.connector.component
        self.signed_in: List[str] = []

    def connect(self, node="n1", user="alice", dept="cardio", exp=None) -> FakeSession:
        """Sign in (the provider is asked, as Autobahn asks the authenticator) and join."""
        token = self.component.authentication["ticket"].on_challenge(None, None)
        if isinstance(token, defer.Deferred):
            token = token.result
        self.signed_in.append(token)
        session = FakeSession(self.store, user, dept, node, exp=exp)
        self.component.handlers["join"](session, session.details)
        return session

    def refuse(self, reason: str, message: str = "") -> None:
        """A sign-in the node refuses (ABORT): Autobahn fires leave without a join."""
        self.component.authentication["ticket"].on_challenge(None, None)
        self.component.handlers["leave"](FakeSession(self.store), CloseDetails(reason, message))

    def end(self, session: FakeSession, reason: str, message: str = "") -> None:
        """The node ends ``session`` (GOODBYE ``reason``) and the transport closes."""
        session.attached = False
        self.component.handlers["leave"](session, CloseDetails(reason, message))
        self.component.handlers["disconnect"](session, True)
