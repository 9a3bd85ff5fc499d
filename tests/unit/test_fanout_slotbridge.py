"""Unit tests of the legacy fan-out over the real bridge plumbing: :class:`Fanout` on a
:class:`SlotBridge` over the runtime's :class:`Slot`, filled and emptied as the bridge
component's session joins and leaves (``test_legacy_fanout.py`` covers the fan-out itself
with a fake bridge)."""

from typing import Any, List

from twisted.internet import task
from twisted.trial.unittest import SynchronousTestCase

from components.core.errors import UNAVAILABLE, Refused
from components.edge.fanout import Fanout, SlotBridge
from components.service.slot import Slot
from tests.support.fakes import FakeSession


class FakeSocket:
    def __init__(self) -> None:
        self.frames: List[Any] = []

    def deliver(self, prepared: Any) -> bool:
        self.frames.append(prepared)
        return True


class FanoutOverSlotTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.slot: Slot[Any] = Slot(task.Clock(), "the node's router session")
        self.bridge = SlotBridge(self.slot)
        self.fanout = Fanout(self.bridge, lambda payload: ("frame", payload))
        self.old, self.new = FakeSession(), FakeSession()

    def test_subscribing_without_a_session_is_refused_unavailable(self):
        failure = self.failureResultOf(self.bridge.subscribe(lambda *a: None, "deptcast.dept.hr"), Refused)
        self.assertEqual(failure.value.uri, UNAVAILABLE)

    def test_a_socket_joining_before_the_bridge_waits_for_it(self):
        sock = FakeSocket()
        d = self.fanout.join(sock, ["deptcast.dept.hr"])
        self.assertNoResult(d)
        self.slot.set(self.old)
        self.successResultOf(d)
        self.old.event("deptcast.dept.hr", {"message": "hello"})
        self.assertEqual(sock.frames, [("frame", b"hello")])

    def test_the_bridge_rejoining_resubscribes_and_a_stale_leave_changes_nothing(self):
        sock = FakeSocket()
        self.slot.set(self.old)
        self.successResultOf(self.fanout.join(sock, ["deptcast.dept.hr", "deptcast.all"]))
        self.assertEqual(sorted(self.old.handlers), ["deptcast.all", "deptcast.dept.hr"])
        # the bridge component leaves (its onLeave clears the slot with itself) and a new one joins
        self.slot.clear(self.old)
        self.assertFalse(self.fanout.is_subscribed("deptcast.dept.hr"))
        self.slot.set(self.new)
        self.assertTrue(self.fanout.is_subscribed("deptcast.dept.hr"))
        self.assertEqual(sorted(self.new.handlers), ["deptcast.all", "deptcast.dept.hr"])
        self.slot.clear(self.old)     # the old session's late leave: the new one stays
        self.assertIs(self.bridge.session, self.new)
        self.new.event("deptcast.dept.hr", {"message": "after"})
        self.assertEqual(sock.frames, [("frame", b"after")])
        # the last socket leaving unsubscribes on the session that holds the subscription
        self.fanout.leave(sock, ["deptcast.dept.hr", "deptcast.all"])
        self.assertEqual(self.new.handlers, {"deptcast.all": [], "deptcast.dept.hr": []})
        self.assertEqual(self.fanout.stats(), {"topics": 0, "subscribed": 0, "memberships": 0})

    def test_sockets_that_left_while_the_bridge_was_away_are_not_resubscribed(self):
        a, b = FakeSocket(), FakeSocket()
        self.slot.set(self.old)
        self.fanout.join(a, ["deptcast.dept.hr"])
        self.fanout.join(b, ["deptcast.dept.cardio"])
        self.slot.clear(self.old)
        self.fanout.leave(b, ["deptcast.dept.cardio"])
        self.slot.set(self.new)
        self.assertEqual(list(self.new.handlers), ["deptcast.dept.hr"])
