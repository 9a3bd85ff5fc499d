"""Unit tests of :class:`components.wamp.bridge.BridgeComponent`: it offers its session in the
runtime's ``bridge`` slot while joined, and a leaving session never takes its successor's place."""

from autobahn.wamp.types import CloseDetails
from twisted.internet import task
from twisted.trial.unittest import SynchronousTestCase

from components.service.runtime import Runtime
from components.wamp import bridge
from components.wamp.bridge import BridgeComponent
from tests.support.fakes import RecordingLog, make_settings


class BridgeComponentTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.runtime = Runtime(clock=task.Clock())
        self.patch(bridge, "runtime", lambda: self.runtime)

    def component(self) -> BridgeComponent:
        c = BridgeComponent()
        c.log = RecordingLog()
        return c

    def test_a_joined_bridge_is_in_the_slot_until_it_leaves(self):
        waiting = self.runtime.bridge.get(5.0)
        first = self.component()
        first.start(make_settings(node_name="n1"))
        self.assertIs(self.successResultOf(waiting), first)
        self.assertEqual(first.log.lines("info"), ["deptcast bridge: the web transport's session is ready on node n1"])
        first.onLeave(CloseDetails(reason="wamp.close.normal"))
        self.assertIsNone(self.runtime.bridge.value)

    def test_an_old_session_leaving_late_keeps_the_new_one(self):
        first, second = self.component(), self.component()
        first.start(make_settings())
        second.start(make_settings())
        first.onLeave(CloseDetails(reason="wamp.close.normal"))
        self.assertIs(self.runtime.bridge.value, second)
