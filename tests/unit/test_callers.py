"""Unit tests of :class:`components.wamp.callers.Callers` with a fake meta API: one lookup per
session, forgotten on leave, and no identity for a caller that is not a client."""

from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import SessionDetails
from twisted.trial.unittest import SynchronousTestCase

from components.core.errors import NOT_AUTHORIZED
from components.core.names import BACKEND_ROLE, MEMBER, PUBLISHER, RLINK_ROLE
from components.core.tokens import Identity
from components import upstream
from components.upstream import worker
from components.wamp.callers import Callers
from tests.support.fakes import FakeRouter, FakeSession, call_details


class CallersTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.router = FakeRouter()
        self.router.join(11, "bob", MEMBER, "cardio")
        self.router.join(12, "boss", PUBLISHER, "mgmt")
        self.session = FakeSession(self.router)
        self.callers = Callers(self.session)

    def lookups(self):
        return [args for procedure, args in self.session.calls if procedure == "wamp.session.get"]

    def identity(self, sid, role=MEMBER):
        return self.callers.identity(call_details(sid, "whatever", role))

    def test_the_department_comes_from_the_meta_api_once_per_session(self):
        self.assertEqual(self.successResultOf(self.identity(11)), Identity("bob", "cardio", MEMBER))
        self.assertEqual(self.successResultOf(self.identity(11)), Identity("bob", "cardio", MEMBER))
        self.assertEqual(self.successResultOf(self.identity(12, PUBLISHER)), Identity("boss", "mgmt", PUBLISHER))
        self.assertEqual(self.lookups(), [(11,), (12,)])

    def test_a_session_that_left_is_forgotten_and_asked_again_if_it_calls(self):
        self.successResultOf(self.identity(11))
        self.callers.forget(11)
        self.callers.forget(99)     # unknown: no error
        self.successResultOf(self.identity(11))
        self.assertEqual(self.lookups(), [(11,), (11,)])

    def test_forget_takes_the_on_leave_event_arguments(self):
        self.successResultOf(self.identity(11))
        self.callers.forget(11, "extra", details=None)
        self.successResultOf(self.identity(11))
        self.assertEqual(len(self.lookups()), 2)

    def test_a_caller_without_a_client_role_is_refused_without_a_lookup(self):
        for sid, role in ((12, BACKEND_ROLE), (12, RLINK_ROLE), (12, None), (None, MEMBER)):
            failure = self.failureResultOf(self.identity(sid, role), ApplicationError)
            self.assertEqual(failure.value.error, NOT_AUTHORIZED)
        self.assertEqual(self.lookups(), [])

    def test_a_caller_gone_before_the_lookup_is_not_cached(self):
        self.router.leave(11)
        failure = self.failureResultOf(self.identity(11), ApplicationError)
        self.assertEqual(failure.value.error, ApplicationError.NO_SUCH_SESSION)
        self.router.join(11, "bob", MEMBER, "cardio")
        self.successResultOf(self.identity(11))
        self.assertEqual(len(self.lookups()), 2)


def _details(authid, authrole, dept):
    """A joined session's details, as Crossbar's router keeps them."""
    return SessionDetails(realm="deptcast", session=11, authid=authid, authrole=authrole, authmethod="ticket",
                          authprovider="function", authextra={"dept": dept})


class _Joined:
    def __init__(self, details):
        self._session_details = details


class _Transport:
    def __init__(self, sessions):
        self._router = type("Router", (), {})()
        self._router._session_id_to_session = sessions


class InProcessRouterTests(SynchronousTestCase):
    """A component attached to its router in-process reads a caller's department from the
    router's session map: no ``wamp.session.get`` call (one per new client in a storm)."""

    def setUp(self) -> None:
        self.router = FakeRouter()
        self.router.join(11, "bob", MEMBER, "cardio")
        self.session = FakeSession(self.router)
        self.sessions = {11: _Joined(_details("bob", MEMBER, "cardio"))}
        self.session._transport = _Transport(self.sessions)
        self.callers = Callers(self.session)
        [status] = upstream.install(upstream.Wiring(), only=[worker.SESSION_INFO.name])
        self.assertTrue(status.applied)
        self.addCleanup(upstream.uninstall)

    def test_the_router_answers_without_a_meta_call(self):
        identity = self.successResultOf(self.callers.identity(call_details(11, "whatever", MEMBER)))
        self.assertEqual(identity, Identity("bob", "cardio", MEMBER))
        self.assertEqual(self.session.calls, [])

    def test_a_session_the_router_does_not_have_is_asked_of_the_meta_api(self):
        del self.sessions[11]
        identity = self.successResultOf(self.callers.identity(call_details(11, "whatever", MEMBER)))
        self.assertEqual(identity, Identity("bob", "cardio", MEMBER))
        self.assertEqual([p for p, _ in self.session.calls], ["wamp.session.get"])

    def test_an_unexpected_shape_is_asked_of_the_meta_api(self):
        self.sessions[11] = object()
        self.successResultOf(self.callers.identity(call_details(11, "whatever", MEMBER)))
        self.assertEqual([p for p, _ in self.session.calls], ["wamp.session.get"])

    def test_without_the_patch_the_meta_api_is_asked(self):
        upstream.uninstall([worker.SESSION_INFO.name])
        identity = self.successResultOf(self.callers.identity(call_details(11, "whatever", MEMBER)))
        self.assertEqual(identity, Identity("bob", "cardio", MEMBER))
        self.assertEqual([p for p, _ in self.session.calls], ["wamp.session.get"])
