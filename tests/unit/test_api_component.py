"""Unit tests of :class:`components.wamp.api.ApiComponent`'s hand-over of the node's message
service through the runtime's ``messages`` slot (its procedures are thin adapters over
:class:`MessageService`, tested in ``test_messaging.py``)."""

from autobahn.wamp.types import CloseDetails
from twisted.internet import task
from twisted.trial.unittest import SynchronousTestCase

from components.service.runtime import Runtime
from components.wamp import api
from components.wamp.api import ApiComponent


class ApiLeaveTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.runtime = Runtime(clock=task.Clock())
        self.patch(api, "runtime", lambda: self.runtime)
        self.successor = object()

    def test_a_leaving_api_clears_its_own_service_only(self):
        old = ApiComponent()
        old._messages = object()
        self.runtime.messages.set(old._messages)
        old.onLeave(CloseDetails(reason="wamp.close.normal"))
        self.assertIsNone(self.runtime.messages.value)
        self.runtime.messages.set(self.successor)
        old.onLeave(CloseDetails(reason="wamp.close.normal"))
        self.assertIs(self.runtime.messages.value, self.successor)

    def test_an_api_that_never_started_does_not_clear_a_running_service(self):
        self.runtime.messages.set(self.successor)
        ApiComponent().onLeave(CloseDetails(reason="wamp.close.normal"))
        self.assertIs(self.runtime.messages.value, self.successor)
