"""Test-only fakes for the unit tests of the adapters (no reactor, no router, no store).

- :class:`FakeRouter`: the WAMP meta API of one router as the components use it (sessions
  with role, authid and department; exact subscriptions, one per URI with many subscribers),
  answering with the same shapes and errors as Crossbar's ``crossbar.router.service``;
- :class:`FakeSession`: a component's session that records what it calls, publishes,
  subscribes and registers; calls answer from a :class:`FakeRouter` at once, or wait in
  :attr:`FakeSession.held` until the test releases them (``hold=True``);
- :class:`RecordingLog`: a logger that keeps its lines, for checks of what was logged;
- :class:`FakeStore`, :class:`FakePublish`, :class:`FakeGate`: the parts of a
  :class:`~components.service.messaging.MessageService`, each answered by hand (or at once).
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.request import Registration
from autobahn.wamp.types import CallDetails
from twisted.internet import defer

from components.core.history import HistoryRequest, format_id
from components.core.messages import make_envelope
from components.core.names import BACKEND_ROLE
from components.core.sendkeys import Outgoing, Stored
from components.core.settings import Settings
from components.core.targets import Target
from components.core.tokens import Identity

#: a 48-byte secret for tokens in unit tests
SECRET = "unit-test-secret-" + "u" * 31


def make_settings(**overrides: Any) -> Settings:
    """Settings for a unit test, without reading the environment or a node directory."""
    values: Dict[str, Any] = dict(node_dir=Path("/nonexistent/deptcast-unit"), jwt_secret=SECRET,
                                  db=":memory:", node_name="n1")
    values.update(overrides)
    return Settings(**values)


# ---------------------------------------------------------------------------------- logging

@dataclass
class LogRecord:
    level: str
    format: str
    fields: Dict[str, Any]

    @property
    def text(self) -> str:
        """The line as a Twisted/txaio logger would render it."""
        try:
            return self.format.format(**self.fields)
        except (KeyError, IndexError, ValueError):
            return self.format


class RecordingLog:
    """Stands in for a Twisted ``Logger`` or a txaio logger and keeps every line."""

    def __init__(self) -> None:
        self.records: List[LogRecord] = []

    def _emit(self, level: str, format: str, **fields: Any) -> None:
        self.records.append(LogRecord(level, format, fields))

    def debug(self, format: str = "", **fields: Any) -> None:
        self._emit("debug", format, **fields)

    def info(self, format: str = "", **fields: Any) -> None:
        self._emit("info", format, **fields)

    def warn(self, format: str = "", **fields: Any) -> None:
        self._emit("warn", format, **fields)

    warning = warn

    def error(self, format: str = "", **fields: Any) -> None:
        self._emit("error", format, **fields)

    def critical(self, format: str = "", **fields: Any) -> None:
        self._emit("critical", format, **fields)

    def failure(self, format: str = "", failure: Any = None, **fields: Any) -> None:
        self._emit("failure", format, failure=failure, **fields)

    def lines(self, *levels: str) -> List[str]:
        """The rendered lines at ``levels`` (all of them if none is given)."""
        return [r.text for r in self.records if not levels or r.level in levels]


def call_details(caller: Optional[int], authid: Optional[str] = None, authrole: Optional[str] = None,
                 procedure: str = "deptcast.test") -> CallDetails:
    """The ``details`` a procedure registered with caller disclosure receives."""
    registration = Registration(None, 1, procedure, lambda *a, **kw: None)
    return CallDetails(registration, caller=caller, caller_authid=authid, caller_authrole=authrole)


# ---------------------------------------------------------------------------------- the router

class FakeRouter:
    """The meta API of one router: ``wamp.session.list/get``, ``wamp.subscription.list/get``.

    :param protect_meta: answer as Crossbar does to a caller that is not ``trusted``: the
        node-wide subscription list leaves out ``wamp.*`` topics and ``wamp.subscription.get``
        of one is refused. ``False`` shows them, to test a component's own filtering.
    """

    def __init__(self, protect_meta: bool = True) -> None:
        self.protect_meta = protect_meta
        self._sessions: Dict[int, Dict[str, Any]] = {}
        self._sub_ids: Dict[str, int] = {}             # uri -> subscription id
        self._subscribers: Dict[int, Set[int]] = {}    # subscription id -> session ids
        self._next_sub = 7001

    # -- changing the router's state

    def join(self, session: int, authid: str, authrole: str, dept: Optional[str] = None) -> Dict[str, Any]:
        """A session joins; return its ``wamp.session.get`` details (also the on_join payload)."""
        info = {"session": session, "authid": authid, "authrole": authrole,
                "authextra": {"dept": dept} if dept is not None else None}
        self._sessions[session] = info
        return dict(info)

    def leave(self, session: int) -> None:
        self._sessions.pop(session, None)
        for sids in list(self._subscribers.values()):
            sids.discard(session)
        self._prune()

    def subscribe(self, session: int, uri: str) -> int:
        sub_id = self._sub_ids.get(uri)
        if sub_id is None:
            sub_id = self._sub_ids[uri] = self._next_sub
            self._next_sub += 1
            self._subscribers[sub_id] = set()
        self._subscribers[sub_id].add(session)
        return sub_id

    def unsubscribe(self, session: int, uri: str) -> None:
        sub_id = self._sub_ids.get(uri)
        if sub_id is not None:
            self._subscribers[sub_id].discard(session)
            self._prune()

    def _prune(self) -> None:
        # Crossbar deletes a subscription when its last subscriber goes
        for uri, sub_id in list(self._sub_ids.items()):
            if not self._subscribers[sub_id]:
                del self._sub_ids[uri]
                del self._subscribers[sub_id]

    def info(self, session: int) -> Dict[str, Any]:
        return dict(self._sessions[session])

    # -- the meta API

    def answer(self, procedure: str, *args: Any) -> Any:
        """What Crossbar's meta procedure ``procedure`` answers now.

        :raises ApplicationError: as Crossbar does (no such session or subscription)
        """
        uri_of = {sub_id: uri for uri, sub_id in self._sub_ids.items()}
        if procedure == "wamp.session.list":
            roles = args[0] if args else None
            return [sid for sid, info in self._sessions.items() if roles is None or info["authrole"] in roles]
        if procedure == "wamp.session.get":
            if args[0] not in self._sessions:
                raise ApplicationError(ApplicationError.NO_SUCH_SESSION, f"no session with ID {args[0]}")
            return self.info(args[0])
        if procedure == "wamp.subscription.list":
            if args and args[0]:
                sid = args[0]
                if sid not in self._sessions:
                    raise ApplicationError(ApplicationError.NO_SUCH_SESSION, f"no session with ID {sid}")
                ids = [s for s, sids in self._subscribers.items() if sid in sids]
            else:
                ids = [s for s in self._subscribers
                       if not (self.protect_meta and uri_of[s].startswith("wamp."))]
            return {"exact": sorted(ids), "prefix": [], "wildcard": []}
        if procedure == "wamp.subscription.get":
            uri = uri_of.get(args[0])
            if uri is None:
                raise ApplicationError(ApplicationError.NO_SUCH_SUBSCRIPTION, f"no subscription {args[0]}")
            if self.protect_meta and uri.startswith("wamp."):
                raise ApplicationError(ApplicationError.NOT_AUTHORIZED, "protected URI")
            return {"id": args[0], "created": "2026-01-01T00:00:00Z", "uri": uri, "match": "exact"}
        raise ApplicationError(ApplicationError.NO_SUCH_PROCEDURE, f"no procedure {procedure}")


# ---------------------------------------------------------------------------------- a session

@dataclass
class Published:
    topic: str
    payload: Any
    options: Any


@dataclass
class HeldCall:
    procedure: str
    args: Tuple[Any, ...]
    deferred: defer.Deferred


class FakeSubscription:
    def __init__(self, session: "FakeSession", topic: str, handler: Callable) -> None:
        self.session, self.topic, self.handler = session, topic, handler
        self.active = True

    def unsubscribe(self) -> defer.Deferred:
        self.active = False
        self.session.handlers[self.topic].remove(self.handler)
        if self.session.router is not None:
            self.session.router.unsubscribe(self.session.session_id, self.topic)
        return defer.succeed(None)


class FakeSession:
    """A component's router session: it records, and answers calls from ``router``.

    :param router: the meta API to answer calls from (``None``: calls fail)
    :param session_id: the session's id on ``router`` (it joins there with ``authrole``)
    :param hold: keep every call pending in :attr:`held` until :meth:`release` or :meth:`answer`
    """

    def __init__(self, router: Optional[FakeRouter] = None, session_id: int = 1,
                 authrole: str = BACKEND_ROLE, hold: bool = False) -> None:
        self.router = router
        self.session_id = session_id
        self.hold = hold
        self.attached = True
        self.log = RecordingLog()
        self.calls: List[Tuple[str, Tuple[Any, ...]]] = []
        self.held: List[HeldCall] = []
        self.published: List[Published] = []
        self.handlers: Dict[str, List[Callable]] = {}
        self.registered: Dict[str, Tuple[Callable, Any]] = {}
        if router is not None:
            router.join(session_id, "node", authrole)

    def stand_in_for(self, component: Any) -> Any:
        """Make ``component`` (an ``ApplicationSession``) call, publish, subscribe, register
        and log through this fake; return it."""
        for name in ("call", "publish", "subscribe", "register", "is_attached", "log"):
            setattr(component, name, getattr(self, name))
        return component

    # -- the ISession methods the components use

    def is_attached(self) -> bool:
        return self.attached

    def call(self, procedure: str, *args: Any, **kwargs: Any) -> defer.Deferred:
        self.calls.append((procedure, args))
        if self.hold:
            d: defer.Deferred = defer.Deferred()
            self.held.append(HeldCall(procedure, args, d))
            return d
        return self._answer(procedure, args)

    def _answer(self, procedure: str, args: Tuple[Any, ...]) -> defer.Deferred:
        if self.router is None:
            return defer.fail(ApplicationError(ApplicationError.NO_SUCH_PROCEDURE, procedure))
        try:
            return defer.succeed(self.router.answer(procedure, *args))
        except ApplicationError as e:
            return defer.fail(e)

    def release(self, count: Optional[int] = None) -> int:
        """Answer the oldest ``count`` held calls (all: ``None``) from the router's state now,
        including calls made while answering; return how many were answered."""
        answered = 0
        while self.held and (count is None or answered < count):
            call = self.held.pop(0)
            self._answer(call.procedure, call.args).chainDeferred(call.deferred)
            answered += 1
        return answered

    def answer(self, result: Any, index: int = 0) -> None:
        """Answer held call ``index`` with ``result`` (an exception: fail it)."""
        call = self.held.pop(index)
        if isinstance(result, Exception):
            call.deferred.errback(result)
        else:
            call.deferred.callback(result)

    def held_procedures(self) -> List[str]:
        return [c.procedure for c in self.held]

    def publish(self, topic: str, *args: Any, options: Any = None, **kwargs: Any) -> defer.Deferred:
        self.published.append(Published(topic, args[0] if args else None, options))
        return defer.succeed(None)

    def subscribe(self, handler: Callable, topic: str, options: Any = None) -> defer.Deferred:
        self.handlers.setdefault(topic, []).append(handler)
        if self.router is not None:
            self.router.subscribe(self.session_id, topic)
        return defer.succeed(FakeSubscription(self, topic, handler))

    def register(self, fn: Callable, procedure: str, options: Any = None) -> defer.Deferred:
        self.registered[procedure] = (fn, options)
        return defer.succeed(None)

    # -- the test's side

    def event(self, topic: str, *args: Any, **kwargs: Any) -> List[Any]:
        """Deliver an event on ``topic`` to this session's handlers; return what they returned."""
        return [handler(*args, **kwargs) for handler in list(self.handlers.get(topic, []))]

    def published_on(self, topic: str) -> List[Any]:
        return [p.payload for p in self.published if p.topic == topic]


# ---------------------------------------------------------------------------------- send path parts

@dataclass
class Append:
    target: Target
    sender: Identity
    message: str
    ts: int
    deferred: defer.Deferred = field(repr=False)
    #: what the service asked the store to call if the append commits after its deadline
    on_late: Optional[Callable[[Dict[str, Any]], None]] = field(default=None, repr=False)


class FakeStore:
    """A :class:`~components.store.threaded.ThreadedStore` whose answers the test gives.

    :param auto: answer every append at once with the next envelope (ids 1, 2, ...), and
        every history read with ``[]``
    """

    def __init__(self, auto: bool = False) -> None:
        self.auto = auto
        self.appends: List[Append] = []
        self.keys: Dict[Tuple[str, str], Tuple[str, Dict[str, Any]]] = {}
        self.histories: List[Tuple[HistoryRequest, defer.Deferred]] = []

    def envelope(self, index: int = -1) -> Dict[str, Any]:
        """The envelope the store would make for append ``index``."""
        n = index % len(self.appends) + 1      # the store numbers messages 1, 2, ...
        a = self.appends[n - 1]
        return make_envelope(format_id(n), a.target, a.sender, a.message, a.ts, seq=n)

    def append(self, target: Target, sender: Identity, message: str, ts: int, on_late=None) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self.appends.append(Append(target, sender, message, ts, d, on_late))
        if self.auto:
            d.callback(self.envelope())
        return d

    def append_many(self, items: Sequence[Outgoing], on_late=None) -> defer.Deferred:
        """As the store's group commit: each unkeyed or new item is an :meth:`append` (the
        test answers it), a known key is answered at once."""
        answers = []
        for item in items:
            known = self.keys.get((item.sender.key, item.key)) if item.key else None
            if known is not None:
                fp, envelope = known
                answers.append(defer.succeed(Stored(envelope if fp == item.fingerprint else None, False)))
                continue
            late = None if on_late is None else (lambda envelope: on_late([Stored(envelope, True)]))
            d = self.append(item.target, item.sender, item.message, item.ts, late)

            def stored(envelope, item=item):
                if item.key:
                    self.keys[(item.sender.key, item.key)] = (item.fingerprint, envelope)
                return Stored(envelope, True)
            answers.append(d.addCallback(stored))
        return defer.gatherResults(answers, consumeErrors=True).addErrback(lambda f: f.value.subFailure)

    def sent_keys(self, sender: Identity, keys: Sequence[str]) -> defer.Deferred:
        return defer.succeed({k: self.keys[(sender.key, k)] for k in keys if (sender.key, k) in self.keys})

    def history(self, request: HistoryRequest) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self.histories.append((request, d))
        if self.auto:
            d.callback([])
        return d


class FakePublish:
    """The service's ``publish(topic, envelope)``: records, and acknowledges at once (``auto``)
    or when the test fires :attr:`calls`' Deferreds."""

    def __init__(self, auto: bool = True) -> None:
        self.auto = auto
        self.calls: List[Tuple[str, Dict[str, Any], defer.Deferred]] = []

    def __call__(self, topic: str, envelope: Dict[str, Any]) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self.calls.append((topic, envelope, d))
        if self.auto:
            d.callback(None)
        return d

    @property
    def published(self) -> List[Tuple[str, Dict[str, Any]]]:
        return [(topic, envelope) for topic, envelope, _ in self.calls]


class FakeGate:
    """A link gate the test opens by hand."""

    def __init__(self, is_open: bool = False) -> None:
        self.is_open = is_open
        self._waiters: List[defer.Deferred] = []

    def wait(self) -> defer.Deferred:
        if self.is_open:
            return defer.succeed(None)
        d: defer.Deferred = defer.Deferred()
        self._waiters.append(d)
        return d

    def open(self) -> None:
        self.is_open = True
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(None)


class FakeObserver:
    """What the operations component reports to ``/health`` and ``/metrics``
    (:class:`~components.service.nodehealth.Observer`): two peers' links, a few sessions."""

    def links_in(self) -> Set[str]:
        return {"n2"}

    def links_out(self) -> Set[str]:
        return {"n2", "n3"}

    def wamp_sessions(self) -> int:
        return 4

    def users_online(self) -> int:
        return 3

    def subscribers(self) -> Dict[str, int]:
        return {"dept": 4, "all": 4, "user": 4, "presence": 1}

    def router_events_sent(self) -> int:
        return 1234
