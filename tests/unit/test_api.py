"""Unit tests of :mod:`components.wamp.api`: the procedures are thin adapters over the message
service the composition root offers in ``runtime().messages``, found at each call."""

from types import SimpleNamespace

from autobahn.wamp.exception import ApplicationError
from twisted.internet import defer, task
from twisted.trial.unittest import SynchronousTestCase

from components.core.errors import UNAVAILABLE
from components.core.tokens import Identity
from components.service.runtime import Runtime
from components.wamp import api
from components.wamp.api import ApiComponent
from tests.support.fakes import RecordingLog

BOB = Identity("bob", "cardio", "member")


class Service:
    def __init__(self, name):
        self.name = name

    def send(self, identity, to, message, key=None):
        return defer.succeed({"by": self.name, "to": to, "message": message, "sender": identity.user})

    def history(self, identity, after, limit, latest, positions):
        return defer.succeed([{"by": self.name, "after": after, "limit": limit}])


class ApiTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.runtime = Runtime(clock=self.clock)
        self.patch(api, "runtime", lambda: self.runtime)
        self.api = ApiComponent()
        self.api.log = RecordingLog()
        self.api._callers = SimpleNamespace(identity=lambda details: defer.succeed(BOB))

    def call(self, procedure, *args, **kwargs):
        """Call a procedure as the router does (``client_errors`` answers a Deferred)."""
        return getattr(self.api, procedure)(*args, details=None, **kwargs)

    def test_each_call_uses_the_service_the_root_offers_now(self):
        self.runtime.messages.set(Service("first"))
        self.assertEqual(self.successResultOf(self.call("send", "cardio", "hi"))["by"], "first")
        self.runtime.messages.set(Service("second"))  # the root joined again
        self.assertEqual(self.successResultOf(self.call("history", limit=5)), [{"by": "second", "after": None,
                                                                                 "limit": 5}])

    def test_a_call_waits_for_the_service_then_is_refused_unavailable(self):
        d = self.call("send", "cardio", "hi")
        self.assertNoResult(d)
        self.clock.advance(api.READY_TIMEOUT)
        self.assertEqual(self.failureResultOf(d, ApplicationError).value.error, UNAVAILABLE)

    def test_a_call_that_waited_is_answered_when_the_service_comes(self):
        d = self.call("send", "cardio", "hi")
        self.runtime.messages.set(Service("late"))
        self.assertEqual(self.successResultOf(d)["by"], "late")
