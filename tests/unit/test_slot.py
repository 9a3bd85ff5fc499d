"""Unit tests of :class:`components.service.slot.Slot` on a ``task.Clock``: a value that comes
and goes, its callbacks, and the bounded waits for it."""

from typing import Any, List

from twisted.internet import task
from twisted.trial.unittest import SynchronousTestCase

from components.core.errors import UNAVAILABLE, Refused
from components.service.slot import Slot


class Owner:
    """A value with an identity (a session, a service)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Owner({self.name})"


class SlotTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.slot: Slot[Owner] = Slot(self.clock, "the thing")
        self.a, self.b = Owner("a"), Owner("b")

    def test_empty_then_set_then_cleared(self):
        self.assertIsNone(self.slot.value)
        self.slot.set(self.a)
        self.assertIs(self.slot.value, self.a)
        self.assertIs(self.successResultOf(self.slot.get(1.0)), self.a)
        self.slot.clear()
        self.assertIsNone(self.slot.value)

    def test_a_waiter_fires_when_the_value_is_set_and_its_timer_is_cancelled(self):
        d = self.slot.get(5.0)
        self.assertNoResult(d)
        self.clock.advance(4.9)
        self.assertNoResult(d)
        self.slot.set(self.a)
        self.assertIs(self.successResultOf(d), self.a)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_waiter_times_out_with_unavailable_naming_what_it_waited_for(self):
        d = self.slot.get(5.0)
        self.clock.advance(4.999)
        self.assertNoResult(d)
        self.clock.advance(0.001)
        refused = self.failureResultOf(d, Refused).value
        self.assertEqual(refused.uri, UNAVAILABLE)
        self.assertIn("the thing is not available yet", refused.detail)
        # a value set later does not reach the timed-out waiter (nor fail on it)
        self.slot.set(self.a)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_timed_out_waiters_are_not_kept_while_the_value_stays_away(self):
        # (checked on the slot's own list: a weak reference would also see the Failure's
        # traceback, which the test run's log observers may keep)
        for _ in range(3):
            d = self.slot.get(1.0)
            self.clock.advance(1.0)
            self.failureResultOf(d, Refused)
        self.assertEqual(self.slot._waiters, [])

    def test_each_waiter_fires_once_with_the_value_set_first(self):
        fired: List[Any] = []
        waiters = [self.slot.get(t).addBoth(fired.append) for t in (1.0, 2.0, 3.0)]
        self.clock.advance(1.5)   # the first one timed out
        self.slot.set(self.a)
        self.slot.clear(self.a)
        self.slot.set(self.b)
        self.clock.advance(10)
        self.assertEqual(len(fired), 3)
        self.assertTrue(fired[0].check(Refused))
        self.assertEqual(fired[1:], [self.a, self.a])
        for d in waiters:
            self.assertIsNone(self.successResultOf(d))   # consumed by fired.append

    def test_a_stale_owner_cannot_clear_its_successor(self):
        cleared: List[None] = []
        self.slot.on_clear(lambda: cleared.append(None))
        self.slot.set(self.a)
        self.slot.clear(self.a)
        self.slot.set(self.b)
        self.slot.clear(self.a)        # a's late leave
        self.assertIs(self.slot.value, self.b)
        self.assertEqual(len(cleared), 1)
        self.slot.clear(self.b)
        self.assertIsNone(self.slot.value)
        self.assertEqual(len(cleared), 2)

    def test_clearing_an_empty_slot_calls_nobody(self):
        cleared: List[None] = []
        self.slot.on_clear(lambda: cleared.append(None))
        self.slot.clear()
        self.slot.clear(self.a)
        self.assertEqual(cleared, [])

    def test_callbacks_on_each_set_and_each_clear_in_order(self):
        seen: List[Any] = []
        self.slot.on_set(lambda v: seen.append(("set", v)))
        self.slot.on_clear(lambda: seen.append(("clear",)))
        self.slot.on_set(lambda v: seen.append(("set again", v)))
        self.slot.set(self.a)
        self.slot.clear()
        self.slot.set(self.b)
        self.assertEqual(seen, [("set", self.a), ("set again", self.a), ("clear",),
                                ("set", self.b), ("set again", self.b)])

    def test_waiters_fire_before_the_set_callbacks(self):
        order: List[str] = []
        self.slot.on_set(lambda v: order.append("callback"))
        self.slot.get(1.0).addCallback(lambda v: order.append("waiter"))
        self.slot.set(self.a)
        self.assertEqual(order, ["waiter", "callback"])

    def test_a_waiter_cancelled_by_its_caller_is_refused_and_forgotten(self):
        d = self.slot.get(5.0)
        d.cancel()
        self.assertEqual(self.failureResultOf(d, Refused).value.uri, UNAVAILABLE)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.slot.set(self.a)    # nothing left to fire
