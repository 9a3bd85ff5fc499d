"""Unit tests of :class:`components.service.messaging.MessageService`, the one send and
history path, with a store, a publish and a link gate answered by hand."""

from typing import Any, List

from twisted.internet import task
from twisted.trial.unittest import SynchronousTestCase

from components.core.errors import INVALID_FRAME, NOT_AUTHORIZED, RATE_LIMITED, TOO_LARGE, UNAVAILABLE, Refused
from components.core.history import HistoryRequest
from components.core.names import MEMBER, PUBLISHER, TOPIC_ALL
from components.core.targets import SCOPE_USER, Target
from components.core.tokens import Identity
from components.service.messaging import RATE_LIMITED_PACE, MessageService
from components.store.threaded import StoreUnavailable
from tests.support.fakes import FakeGate, FakePublish, FakeStore, make_settings

BOB = Identity("bob", "hr", MEMBER)
BOSS = Identity("boss", "mgmt", PUBLISHER)
NOW = 1_750_000_000.25


class MessageServiceTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()            # the rate limiter's monotonic clock
        self.store = FakeStore()
        self.publish = FakePublish(auto=False)
        self.gate = FakeGate(is_open=True)
        self.settings = make_settings(rate=1.0, burst=2, max_message_bytes=16, history_limit=5)
        self.pace = task.Clock()             # the reactor: refusal summaries, the pace of rate_limited
        self.service = MessageService(self.settings, self.store, self.publish, self.gate,
                                      now=lambda: NOW, monotonic=self.clock.seconds, clock=self.pace)
        self.service.store_ready = True

    def refused(self, d: Any) -> Refused:
        """The refusal ``d`` ends with (a ``rate_limited`` one comes after a short pace)."""
        self.pace.advance(RATE_LIMITED_PACE)
        return self.failureResultOf(d, Refused).value

    def refusal(self, d: Any) -> str:
        return self.refused(d).uri

    def send_through(self, identity: Identity, to: str, message: str) -> Any:
        """Send, let the store and the router answer, return the envelope."""
        d = self.service.send(identity, to, message)
        self.store.appends[-1].deferred.callback(self.store.envelope())
        self.publish.calls[-1][2].callback(None)
        return self.successResultOf(d)


class SendTests(MessageServiceTestCase):
    def test_the_envelope_is_published_on_the_targets_topic_after_the_store_returns(self):
        d = self.service.send(BOB, "hr_alice", "hi")
        [append] = self.store.appends
        self.assertEqual((append.target, append.sender, append.message, append.ts),
                         (Target(SCOPE_USER, "hr_alice", dept="hr", user="alice"), BOB, "hi", int(NOW * 1000)))
        self.assertEqual(self.publish.calls, [])
        envelope = self.store.envelope()
        append.deferred.callback(envelope)
        self.assertEqual(self.publish.published, [("deptcast.user.hr_alice", envelope)])
        # the send answers only once the router has taken the event
        self.assertNoResult(d)
        self.publish.calls[0][2].callback(None)
        self.assertIs(self.successResultOf(d), envelope)

    def test_each_kind_of_target_has_its_topic(self):
        self.assertEqual(self.send_through(BOSS, "All", "to all")["target"], "All")
        self.send_through(BOSS, "cardio", "to cardio")
        self.assertEqual([topic for topic, _ in self.publish.published], [TOPIC_ALL, "deptcast.dept.cardio"])

    def test_refusals_never_touch_the_store_or_the_router(self):
        cases = [(BOB, None, "x", INVALID_FRAME), (BOB, "hr", None, INVALID_FRAME), (BOB, "hr", "", INVALID_FRAME),
                 (BOB, "x..y", "x", INVALID_FRAME), (BOB, "hr", 17, INVALID_FRAME),
                 (BOB, "hr", "x" * 17, TOO_LARGE), (BOB, "hr", "é" * 9, TOO_LARGE),
                 (BOB, "cardio", "x", NOT_AUTHORIZED), (BOB, "cardio_bob", "x", NOT_AUTHORIZED),
                 (BOB, "All", "x", NOT_AUTHORIZED)]
        for identity, to, message, uri in cases:
            self.assertEqual(self.refusal(self.service.send(identity, to, message)), uri, (to, message))
        self.assertEqual((self.store.appends, self.publish.calls), ([], []))

    def test_a_message_at_the_size_limit_is_accepted(self):
        self.assertEqual(self.send_through(BOB, "hr", "x" * 16)["message"], "x" * 16)
        self.assertEqual(self.send_through(BOB, "hr", "é" * 8)["message"], "é" * 8)

    def test_a_failing_store_fails_the_send_and_publishes_nothing(self):
        d = self.service.send(BOB, "hr", "hi")
        self.store.appends[0].deferred.errback(RuntimeError("disk full"))
        refusal = self.refused(d)   # the caller hears unavailable, never the store's text
        self.assertEqual(refusal.uri, UNAVAILABLE)
        self.assertNotIn("disk full", refusal.detail)
        self.assertEqual(self.publish.calls, [])
        self.flushLoggedErrors(RuntimeError)  # its first traceback is logged once


class RateLimitTests(MessageServiceTestCase):
    def test_the_burst_then_the_rate_per_department_and_user(self):
        self.send_through(BOB, "hr", "1")
        self.send_through(BOB, "hr", "2")
        self.assertEqual(self.refusal(self.service.send(BOB, "hr", "3")), RATE_LIMITED)
        # the same user id in another department is another user with its own bucket
        self.send_through(Identity("bob", "cardio", MEMBER), "cardio", "1")
        self.send_through(Identity("bob", "cardio", MEMBER), "cardio", "2")
        # one token back per second (rate 1)
        self.clock.advance(0.9)
        self.assertEqual(self.refusal(self.service.send(BOB, "hr", "4")), RATE_LIMITED)
        self.clock.advance(0.1)
        self.send_through(BOB, "hr", "5")
        self.assertEqual(self.refusal(self.service.send(BOB, "hr", "6")), RATE_LIMITED)
        self.assertEqual([a.message for a in self.store.appends], ["1", "2", "1", "2", "5"])

    def test_the_refusal_says_the_limits(self):
        self.send_through(BOB, "hr", "1")
        self.send_through(BOB, "hr", "2")
        refused = self.refused(self.service.send(BOB, "hr", "3"))
        self.assertIn("more than 2 messages in a burst; slow down to 1 per second", refused.detail)

    def test_an_invalid_request_does_not_use_up_the_burst(self):
        for _ in range(5):
            self.refusal(self.service.send(BOB, "cardio", "not mine"))
        self.send_through(BOB, "hr", "1")
        self.send_through(BOB, "hr", "2")

    def test_rate_zero_turns_the_limit_off(self):
        service = MessageService(make_settings(rate=0.0, burst=1), FakeStore(auto=True), FakePublish(),
                                 monotonic=self.clock.seconds)
        service.store_ready = True
        for i in range(20):
            self.successResultOf(service.send(BOB, "hr", str(i)))


class GateTests(MessageServiceTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.gate.is_open = False

    def test_sends_wait_for_the_gate_and_then_go_in_order(self):
        first = self.service.send(BOB, "hr", "first")
        self.service.send(BOSS, "All", "second")
        self.assertEqual(self.store.appends, [])
        self.assertNoResult(first)
        self.gate.open()
        self.assertEqual([a.message for a in self.store.appends], ["first", "second"])

    def test_a_refused_send_is_answered_at_once_even_while_the_gate_is_closed(self):
        self.assertEqual(self.refusal(self.service.send(BOB, "cardio", "x")), NOT_AUTHORIZED)
        self.assertEqual(self.refusal(self.service.history(BOB, limit=0)), INVALID_FRAME)

    def test_history_waits_for_the_gate(self):
        d = self.service.history(BOB)
        self.assertEqual(self.store.histories, [])
        self.gate.open()
        [(request, answer)] = self.store.histories
        answer.callback([{"id": "1"}])
        self.assertEqual(self.successResultOf(d), [{"id": "1"}])

    def test_without_a_gate_nothing_waits(self):
        service = MessageService(self.settings, self.store, FakePublish(), monotonic=self.clock.seconds)
        service.store_ready = True
        service.send(BOB, "hr", "x")
        service.history(BOB)
        self.assertEqual((len(self.store.appends), len(self.store.histories)), (1, 1))


class HistoryTests(MessageServiceTestCase):
    def request(self, **kwargs: Any) -> HistoryRequest:
        d = self.service.history(BOB, **kwargs)
        request, answer = self.store.histories[-1]
        answer.callback([])
        self.assertEqual(self.successResultOf(d), [])
        return request

    def test_the_readers_topics_and_the_capped_limit(self):
        request = self.request(limit=100)
        self.assertEqual(request.topics, ("deptcast.dept.hr", TOPIC_ALL, "deptcast.user.hr_bob"))
        self.assertEqual((request.after, request.limit, request.latest, request.positions), (0, 5, False, None))
        self.assertEqual(self.request(after="0000000000000042", limit=3, latest=True).after, 42)
        self.assertEqual(self.request(positions={"deptcast.user.hr_bob": 7}).positions, {"deptcast.user.hr_bob": 7})

    def test_malformed_arguments_and_foreign_topics_never_reach_the_store(self):
        cases: List[Any] = [
            (dict(after="abc"), INVALID_FRAME), (dict(after=42), INVALID_FRAME), (dict(limit=0), INVALID_FRAME),
            (dict(limit="10"), INVALID_FRAME), (dict(limit=True), INVALID_FRAME), (dict(latest="yes"), INVALID_FRAME),
            (dict(positions=[]), INVALID_FRAME), (dict(positions={TOPIC_ALL: -1}), INVALID_FRAME),
            (dict(positions={TOPIC_ALL: 1}, after="0000000000000001"), INVALID_FRAME),
            (dict(positions={"deptcast.dept.cardio": 1}), NOT_AUTHORIZED),
            (dict(positions={"deptcast.user.cardio_bob": 1}), NOT_AUTHORIZED),
        ]
        for kwargs, uri in cases:
            self.assertEqual(self.refusal(self.service.history(BOB, **kwargs)), uri, kwargs)
        self.assertEqual(self.store.histories, [])


class StoreAvailabilityTests(MessageServiceTestCase):
    def test_nothing_is_stored_until_the_store_is_ready(self):
        self.service.store_ready = False
        self.assertEqual(self.refusal(self.service.send(BOB, "hr", "early")), UNAVAILABLE)
        self.assertEqual(self.refusal(self.service.history(BOB)), UNAVAILABLE)
        self.assertEqual(self.store.appends, [])

    def test_a_store_past_its_deadline_is_unavailable_without_internals(self):
        d = self.service.send(BOB, "hr", "x")
        self.store.appends[-1].deferred.errback(StoreUnavailable("OperationalError: connection to 10.0.0.5 failed"))
        refusal = self.failureResultOf(d, Refused).value
        self.assertEqual((refusal.uri, refusal.retry_after), (UNAVAILABLE, 2))
        self.assertNotIn("10.0.0.5", refusal.detail)
        self.assertEqual(self.publish.calls, [])

    def test_an_append_committed_after_its_deadline_is_still_published(self):
        d = self.service.send(BOB, "hr", "late")
        append = self.store.appends[-1]
        append.deferred.errback(StoreUnavailable("no answer within 5 s"))
        self.failureResultOf(d, Refused)
        envelope = self.store.envelope()
        append.on_late(envelope)  # the store committed it after all
        self.assertEqual(self.publish.published, [("deptcast.dept.hr", envelope)])


class BatchAndKeyTests(SynchronousTestCase):
    """How the rate limit counts batches and keyed retries: each item is one send from the
    sender's bucket (members 2 at once here, publishers 3 of their own); a retry answered its
    stored envelope gives its token back."""

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.store = FakeStore(auto=True)
        self.publish = FakePublish()
        self.service = MessageService(make_settings(rate=1.0, burst=2, publisher_rate=1.0, publisher_burst=3),
                                      self.store, self.publish, FakeGate(is_open=True), now=lambda: NOW,
                                      monotonic=self.clock.seconds, clock=task.Clock())
        self.service.store_ready = True

    def batch(self, identity: Identity, items: List[Any]) -> List[Any]:
        return self.successResultOf(self.service.send_batch(identity, items))

    def test_each_item_takes_one_send_the_first_that_fit_go(self):
        results = self.batch(BOB, [{"to": "hr", "message": f"m{i}"} for i in range(4)])
        self.assertEqual([r.get("error") for r in results], [None, None, RATE_LIMITED, RATE_LIMITED])
        self.assertEqual([e["message"] for _, e in self.publish.published], ["m0", "m1"])

    def test_refused_items_take_nothing_and_the_others_go_on(self):
        results = self.batch(BOB, [{"to": "it", "message": "x"}, {"to": "hr", "message": ""}, "junk",
                                   {"to": "hr", "message": "a", "extra": 1}, {"to": "hr", "message": "ok"}])
        self.assertEqual([r.get("error") for r in results],
                         [NOT_AUTHORIZED, INVALID_FRAME, INVALID_FRAME, INVALID_FRAME, None])

    def test_publishers_have_a_bucket_of_their_own(self):
        results = self.batch(BOSS, [{"to": "hr", "message": f"m{i}"} for i in range(4)])
        self.assertEqual([r.get("error") for r in results], [None, None, None, RATE_LIMITED])
        self.assertEqual([r.get("error") for r in self.batch(BOB, [{"to": "hr", "message": "x"}] * 2)],
                         [None, None])

    def test_a_retry_answered_its_stored_envelope_costs_nothing(self):
        first = self.successResultOf(self.service.send(BOB, "hr", "once", "k1"))
        for _ in range(5):  # past the burst of 2: answered from the store, nothing published
            self.assertEqual(self.successResultOf(self.service.send(BOB, "hr", "once", "k1")), first)
        self.assertEqual(len(self.publish.published), 1)
        self.assertEqual(self.successResultOf(self.service.send(BOB, "hr", "next"))["message"], "next")
        d = self.service.send(BOB, "hr", "again", "k1")  # the key for another notice
        self.assertEqual(self.failureResultOf(d, Refused).value.uri, INVALID_FRAME)

    def test_more_than_a_thousand_items_or_no_list_refuse_the_call(self):
        for items in ([{"to": "hr", "message": "m"}] * 1001, "items", None):
            d = self.service.send_batch(BOSS, items)
            self.assertEqual(self.failureResultOf(d, Refused).value.uri, INVALID_FRAME)
        self.assertEqual(self.store.appends, [])
