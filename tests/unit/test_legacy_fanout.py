"""Unit tests of :class:`components.edge.legacy.Fanout`: reference-counted subscriptions and
frame-once delivery, with a fake bridge (no reactor, no router)."""

from typing import Any, Callable, List, Optional, Tuple

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from components.edge.legacy import Fanout


class FakeSubscription:
    def __init__(self, bridge: "FakeBridge", topic: str) -> None:
        self._bridge = bridge
        self.topic = topic

    def unsubscribe(self) -> defer.Deferred:
        self._bridge.unsubscribed.append(self.topic)
        return defer.succeed(None)


class FakeBridge:
    """Records subscribe requests; the test answers them."""

    def __init__(self) -> None:
        self.session: Optional[object] = object()
        self.requests: List[Tuple[str, Callable[..., None], defer.Deferred]] = []
        self.unsubscribed: List[str] = []
        self.joined: List[Callable] = []
        self.lost: List[Callable] = []

    def on_join(self, callback) -> None:
        self.joined.append(callback)

    def on_lost(self, callback) -> None:
        self.lost.append(callback)

    def subscribe(self, handler, topic: str) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self.requests.append((topic, handler, d))
        return d

    def grant(self, index: int = -1) -> None:
        topic, _, d = self.requests[index]
        d.callback(FakeSubscription(self, topic))

    def grant_all(self) -> None:
        for topic, _, d in self.requests:
            if not d.called:
                d.callback(FakeSubscription(self, topic))

    def handler(self, topic: str) -> Callable[..., None]:
        return [h for t, h, _ in self.requests if t == topic][-1]

    def lose(self) -> None:
        self.session = None
        for callback in self.lost:
            callback()

    def rejoin(self) -> None:
        self.session = object()
        for callback in self.joined:
            callback(self.session)


class FakeSocket:
    def __init__(self, name: str) -> None:
        self.name = name
        self.frames: List[Any] = []

    def deliver(self, prepared) -> None:
        self.frames.append(prepared)


class FanoutTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.bridge = FakeBridge()
        self.prepared: List[bytes] = []

        def prepare(payload: bytes):
            self.prepared.append(payload)
            return ("frame", payload)
        self.fanout = Fanout(self.bridge, prepare)

    def topics_requested(self) -> List[str]:
        return [t for t, _, _ in self.bridge.requests]

    def test_one_subscription_per_topic_however_many_sockets(self):
        a, b = FakeSocket("a"), FakeSocket("b")
        da = self.fanout.join(a, ["dept.x", "all"])
        db = self.fanout.join(b, ["dept.x", "all"])
        self.assertEqual(self.topics_requested(), ["dept.x", "all"])
        self.assertNoResult(da)
        self.assertNoResult(db)
        self.bridge.grant_all()
        self.successResultOf(da)
        self.successResultOf(db)
        # a third socket joins an already subscribed topic: ready at once, no new request
        c = FakeSocket("c")
        self.successResultOf(self.fanout.join(c, ["dept.x"]))
        self.assertEqual(self.topics_requested(), ["dept.x", "all"])
        self.assertEqual(self.fanout.stats(), {"topics": 2, "subscribed": 2, "memberships": 5})

    def test_each_event_is_framed_once_and_the_same_frame_goes_to_every_socket(self):
        socks = [FakeSocket(str(i)) for i in range(5)]
        for s in socks:
            self.fanout.join(s, ["dept.x"])
        self.bridge.grant_all()
        self.bridge.handler("dept.x")({"message": "hello", "id": "1"})
        self.assertEqual(self.prepared, [b"hello"])
        self.assertEqual({id(s.frames[0]) for s in socks}, {id(socks[0].frames[0])})
        self.assertEqual(socks[0].frames, [("frame", b"hello")])

    def test_events_without_message_text_are_not_forwarded(self):
        s = FakeSocket("s")
        self.fanout.join(s, ["dept.x"])
        self.bridge.grant_all()
        self.bridge.handler("dept.x")({"no": "message"})
        self.bridge.handler("dept.x")()
        self.assertEqual((s.frames, self.prepared), ([], []))

    def test_the_last_socket_to_leave_releases_the_subscription(self):
        a, b = FakeSocket("a"), FakeSocket("b")
        self.fanout.join(a, ["dept.x", "user.a"])
        self.fanout.join(b, ["dept.x", "user.b"])
        self.bridge.grant_all()
        self.fanout.leave(a, ["dept.x", "user.a"])
        self.assertEqual(self.bridge.unsubscribed, ["user.a"])
        self.assertTrue(self.fanout.is_subscribed("dept.x"))
        self.fanout.leave(b, ["dept.x", "user.b"])
        self.assertEqual(self.bridge.unsubscribed, ["user.a", "dept.x", "user.b"])
        self.assertEqual(self.fanout.stats(), {"topics": 0, "subscribed": 0, "memberships": 0})
        # an event still in flight for a released topic goes nowhere
        self.bridge.handler("dept.x")({"message": "late"})
        self.assertEqual((a.frames, b.frames), ([], []))

    def test_leaving_while_the_subscribe_is_pending_unsubscribes_when_it_completes(self):
        a = FakeSocket("a")
        d = self.fanout.join(a, ["dept.x"])
        self.fanout.leave(a, ["dept.x"])
        self.assertEqual(self.bridge.unsubscribed, [])
        self.bridge.grant_all()
        self.successResultOf(d)
        self.assertEqual(self.bridge.unsubscribed, ["dept.x"])
        self.assertFalse(self.fanout.is_subscribed("dept.x"))
        # joining again subscribes anew
        self.fanout.join(FakeSocket("b"), ["dept.x"])
        self.assertEqual(self.topics_requested(), ["dept.x", "dept.x"])

    def test_a_failed_subscribe_fails_the_join_and_a_later_join_retries(self):
        a = FakeSocket("a")
        d = self.fanout.join(a, ["dept.x"])
        self.bridge.requests[0][2].errback(RuntimeError("no"))
        self.failureResultOf(d)
        self.fanout.leave(a, ["dept.x"])
        d2 = self.fanout.join(FakeSocket("b"), ["dept.x"])
        self.assertEqual(len(self.bridge.requests), 2)
        self.bridge.grant(-1)
        self.successResultOf(d2)

    def test_a_lost_session_is_resubscribed_on_rejoin_for_topics_still_held(self):
        a, b = FakeSocket("a"), FakeSocket("b")
        self.fanout.join(a, ["dept.x"])
        self.fanout.join(b, ["dept.y"])
        self.bridge.grant_all()
        self.bridge.lose()
        self.assertFalse(self.fanout.is_subscribed("dept.x"))
        self.fanout.leave(b, ["dept.y"])  # nothing to unsubscribe: the session is gone
        self.assertEqual(self.bridge.unsubscribed, [])
        # a socket joining while the bridge is down waits for the rejoin
        c = FakeSocket("c")
        dc = self.fanout.join(c, ["dept.z"])
        self.assertEqual(len(self.bridge.requests), 2)
        self.bridge.rejoin()
        self.assertEqual(sorted(self.topics_requested()[2:]), ["dept.x", "dept.z"])
        self.assertNoResult(dc)
        self.bridge.grant_all()
        self.successResultOf(dc)
        self.bridge.handler("dept.x")({"message": "after rejoin"})
        self.assertEqual(a.frames, [("frame", b"after rejoin")])

    def test_an_answer_from_the_lost_session_is_ignored(self):
        a = FakeSocket("a")
        d = self.fanout.join(a, ["dept.x"])
        self.bridge.lose()
        self.bridge.grant(0)  # the old session's late answer
        self.assertFalse(self.fanout.is_subscribed("dept.x"))
        self.assertNoResult(d)
        self.bridge.rejoin()
        self.bridge.grant(-1)
        self.successResultOf(d)
        self.assertTrue(self.fanout.is_subscribed("dept.x"))
