"""Calls of the node's own procedures answered in-process (:mod:`components.upstream.localcalls`),
on a real Crossbar router with a real router component registered as a node's are: the caller
gets the very messages upstream's INVOCATION/YIELD round trip gives it (results, errors,
refusals), and the component's session sees no INVOCATION."""

from types import SimpleNamespace
from typing import Any, List

from autobahn.wamp import message
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import ComponentConfig, RegisterOptions, SessionDetails
from crossbar.router.router import RouterFactory
from crossbar.router.session import RouterApplicationSession
from crossbar.worker.types import RouterRealm
from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from components import upstream
from components.core import names
from components.upstream import localcalls, roles

BACKEND = "deptcast-backend"


def node_router() -> Any:
    """A realm with the roles of ``deptcast node-config`` (``components.ops.nodeconfig``)."""
    factory = RouterFactory("node1", "worker1", None)
    factory.start_realm(RouterRealm(None, None, {"name": names.REALM}))
    for role in names.CLIENT_ROLES:
        factory.add_role(names.REALM, {"name": role, "authorizer": names.PROC_AUTHORIZE})
    factory.add_role(names.REALM, {"name": BACKEND, "permissions": [
        {"uri": "deptcast.", "match": "prefix", "allow": {"call": True, "register": True, "publish": True,
                                                          "subscribe": True},
         "disclose": {"caller": True, "publisher": True}, "cache": True}]})
    return factory.get(names.REALM)


class Wire:
    """A client's transport: what the router sent it."""

    def __init__(self) -> None:
        self.sent: List[Any] = []

    def send(self, msg: Any) -> None:
        self.sent.append(msg)


class Caller(SimpleNamespace):
    """A client's router session (hashable, as the router's maps need)."""

    __hash__ = object.__hash__


def caller(router: Any, session_id: int, user: str = "alice", role: str = names.MEMBER) -> Any:
    details = SessionDetails(realm=names.REALM, session=session_id, authid=user, authrole=role,
                             authmethod="ticket", authprovider="function", authextra={"dept": "cardio"})
    session = Caller(_realm=names.REALM, _authrole=role, _authid=user, _session_id=session_id,
                              _authmethod="ticket", _authprovider="function", _authextra={"dept": "cardio"},
                              _session_details=details, _transport=Wire())
    router.attach(session)
    return session


class Component:
    """A router component registering the procedures, as a node's components are attached."""

    def __init__(self, router: Any) -> None:
        from autobahn.twisted.wamp import ApplicationSession

        self.invocations: List[Any] = []
        self.later: defer.Deferred = defer.Deferred()
        seen = self.invocations

        class Session(ApplicationSession):
            def onMessage(self, msg):
                if isinstance(msg, message.Invocation):
                    seen.append(msg)
                return ApplicationSession.onMessage(self, msg)

        self.session = Session(ComponentConfig(names.REALM))
        # (attaching it joins it)
        RouterApplicationSession(self.session, router, authid="node", authrole=BACKEND)
        opts = RegisterOptions(details_arg="details")
        for procedure, fn in ((names.PROC_ACK, self.ack), (names.PROC_RECEIPTS, self.ack),
                              (names.PROC_HISTORY, self.history)):
            self.session.register(fn, procedure, options=opts)
        self.waiting: List[defer.Deferred] = []

    def pages(self, page: Any) -> None:
        """Answer every history call waiting for the store with ``page``."""
        waiting, self.waiting = self.waiting, []
        for d in waiting:
            d.callback(page)

    async def history(self, limit=None, *args, details=None, **kwargs):
        """As the api's: an ``async def`` whose answer waits for the store."""
        d: defer.Deferred = defer.Deferred()
        self.waiting.append(d)
        page = await d
        if page == "refused":
            raise ApplicationError("deptcast.error.rate_limited", "slow down")
        return page[:limit]

    def ack(self, ids=None, state=None, *args, details=None, **kwargs):
        if ids == "bad":
            raise ApplicationError("deptcast.error.invalid_argument", "ids must be a list")
        if ids == "boom":
            raise RuntimeError("internal detail")
        if ids == "later":
            return self.later
        return {"caller": details.caller, "authid": details.caller_authid, "procedure": details.procedure,
                "ids": ids, "state": state}


def authorize(details, uri, action, options):
    allow = details["authid"] != "mallory"
    return {"allow": allow, "disclose": allow, "cache": False}


class LocalCallsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.router = node_router()
        [state] = upstream.install(upstream.Wiring(router=self.router, authorize=authorize),
                                   only=[roles.IN_PROCESS.name])
        self.assertTrue(state.applied)
        self.addCleanup(upstream.uninstall)
        self.component = Component(self.router)
        self.request = 0

    def patch(self) -> None:
        [state] = upstream.install(upstream.Wiring(router=self.router), only=[localcalls.DIRECT_CALLS.name])
        self.assertTrue(state.applied)

    def call(self, session: Any, procedure: str, *args: Any) -> Any:
        self.request += 1
        session._transport.sent.clear()
        self.router.process(session, message.Call(self.request, procedure, args=list(args)))
        [answer] = session._transport.sent
        return answer.marshal()[2:] if isinstance(answer, message.Result) else answer.marshal()[3:]

    def answers(self) -> List[Any]:
        alice = caller(self.router, 100 + self.request)
        mallory = caller(self.router, 200 + self.request, "mallory")
        return [self.call(alice, names.PROC_ACK, ["e1", "e2"], "delivered"),
                self.call(alice, names.PROC_ACK, "bad"),
                self.call(alice, names.PROC_ACK, "boom"),
                self.call(mallory, names.PROC_ACK, ["e1"], "delivered"),
                self.call(alice, names.PROC_RECEIPTS, ["e1"], "seen")]

    def normalised(self, answers: List[Any]) -> List[Any]:
        # the caller's and callee's session ids differ between two callers; the rest must not
        out = []
        for answer in answers:
            text = repr(answer)
            for sid in range(100, 300):
                text = text.replace(f"session_id={sid},", "session_id=S,").replace(f"'caller': {sid},", "'caller': S,")
            out.append(text)
        return out

    def test_the_caller_gets_what_upstream_gives_it(self):
        before = self.answers()
        self.assertEqual(len(self.component.invocations), 4)  # upstream: an INVOCATION each but the refused
        self.patch()
        after = self.answers()
        self.assertEqual(self.normalised(after), self.normalised(before))
        result, bad, boom, refused, _ = after
        self.assertEqual(result[0]["callee_authrole"], "deptcast-backend")
        self.assertEqual(result[1][0]["ids"], ["e1", "e2"])
        self.assertEqual(result[1][0]["authid"], "alice")
        self.assertEqual(bad[1:], ["deptcast.error.invalid_argument", ["ids must be a list"]])
        self.assertEqual(boom[1], "wamp.error.runtime_error")
        self.assertEqual(refused[1], ApplicationError.NOT_AUTHORIZED)

    def test_the_component_sees_no_invocation_for_its_direct_procedures(self):
        self.patch()
        self.answers()
        # deptcast.receipts is not answered directly: its one call went through an INVOCATION
        self.assertEqual([i.registration for i in self.component.invocations],
                         [self.component.session._registrations and
                          self.router._dealer._registration_map.best_matching_observation(names.PROC_RECEIPTS).id])
        self.assertEqual(self.router._dealer._invocations, {})

    def test_an_answer_that_comes_later_is_written_when_it_comes(self):
        self.patch()
        alice = caller(self.router, 7)
        self.router.process(alice, message.Call(1, names.PROC_ACK, args=["later"]))
        self.assertEqual(alice._transport.sent, [])
        self.component.later.callback({"ok": True})
        [answer] = alice._transport.sent
        self.assertIsInstance(answer, message.Result)
        self.assertEqual(answer.args, [{"ok": True}])

    def test_a_caller_that_left_gets_nothing_written(self):
        self.patch()
        alice = caller(self.router, 8)
        wire = alice._transport
        self.router.process(alice, message.Call(1, names.PROC_ACK, args=["later"]))
        alice._transport = None
        self.component.later.callback({"ok": True})
        self.assertEqual(wire.sent, [])

    def test_calls_it_cannot_answer_directly_take_upstreams_path(self):
        self.patch()
        alice = caller(self.router, 9)
        # a call timeout needs the dealer's invocation records
        self.router.process(alice, message.Call(1, names.PROC_ACK, args=[["e1"], "delivered"], timeout=5000))
        self.assertEqual(len(self.component.invocations), 1)
        [answer] = alice._transport.sent
        self.assertIsInstance(answer, message.Result)


class DirectHistoryTests(SynchronousTestCase):
    """``deptcast.history``: an ``async def`` answering when the store has read; counted among
    the caller's calls in flight until then."""

    setUp = LocalCallsTests.setUp
    patch = LocalCallsTests.patch

    def call_later(self, session: Any, request: int, **kwargs: Any) -> None:
        self.router.process(session, message.Call(request, names.PROC_HISTORY, kwargs=kwargs))

    def test_a_history_page_is_what_upstream_gives_and_counts_in_flight_while_it_waits(self):
        answers = []
        for patched in (False, True):
            if patched:
                self.patch()
            alice = caller(self.router, 300 + patched)
            self.call_later(alice, 1, limit=2)
            self.call_later(alice, 2, limit=1)
            self.assertEqual(alice._transport.sent, [])
            self.assertEqual(localcalls.in_flight(alice), 2 if patched else 0)
            self.component.pages([{"id": "1"}, {"id": "2"}, {"id": "3"}])
            self.assertEqual(localcalls.in_flight(alice), 0)
            answers.append([(type(m).__name__, m.request, m.args) for m in alice._transport.sent])
        self.assertEqual(answers[1], answers[0])
        self.assertEqual(answers[1], [("Result", 1, [[{"id": "1"}, {"id": "2"}]]), ("Result", 2, [[{"id": "1"}]])])
        self.assertEqual(len(self.component.invocations), 2)  # upstream's two; none once patched

    def test_a_refusal_after_the_wait_is_the_callers_error(self):
        self.patch()
        alice = caller(self.router, 310)
        self.call_later(alice, 1, limit=2)
        self.component.pages("refused")
        [error] = alice._transport.sent
        self.assertIsInstance(error, message.Error)
        self.assertEqual((error.request, error.error, error.args), (1, "deptcast.error.rate_limited", ["slow down"]))
        self.assertEqual(localcalls.in_flight(alice), 0)
