"""Unit tests of :class:`components.wamp.callers.Callers` with a fake meta API: one lookup per
session, forgotten on leave, and no identity for a caller that is not a client."""

from autobahn.wamp.exception import ApplicationError
from twisted.trial.unittest import SynchronousTestCase

from components.core.errors import NOT_AUTHORIZED
from components.core.names import BACKEND_ROLE, MEMBER, PUBLISHER, RLINK_ROLE
from components.core.tokens import Identity
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
