"""Unit tests of :class:`components.edge.legacy.Fanout`: reference-counted subscriptions,
frame-once delivery, and each message once in seq order with the gap fill, with a fake
bridge and a fake store (no reactor, no router)."""

from typing import Any, Callable, Dict, List, Optional, Tuple

from twisted.internet import defer, task
from twisted.trial.unittest import SynchronousTestCase

from components.core.metrics import LEGACY_DELIVERIES
from components.edge import fanout
from components.edge.legacy import Fanout
from components.service.links import LinkState


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
    def __init__(self, name: str, open_: bool = True) -> None:
        self.name = name
        self.open = open_
        self.frames: List[Any] = []

    def deliver(self, prepared) -> bool:
        if self.open:
            self.frames.append(prepared)
        return self.open


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

    def test_receipts_record_who_each_event_was_written_to_once_per_event(self):
        written: List[Tuple[Any, List[Tuple[str, str]]]] = []

        class Recorder:
            def written(self, envelope_id, users):
                written.append((envelope_id, sorted(users)))   # the fan-out keeps readers in a set: no order
        fan = Fanout(self.bridge, lambda payload: payload, receipts=Recorder())
        ann, bob, anon, gone = FakeSocket("ann"), FakeSocket("bob"), FakeSocket("anon"), FakeSocket("gone", False)
        ann.receipt_user, bob.receipt_user, gone.receipt_user = ("hr", "ann"), ("hr", "bob"), ("hr", "gone")
        for s in (ann, bob, anon, gone):                       # anon: open mode, no receipts
            fan.join(s, ["dept.hr"])
        self.bridge.grant_all()
        self.bridge.handler("dept.hr")({"message": "hello", "id": "0000000000000007"})
        self.assertEqual(written, [("0000000000000007", [("hr", "ann"), ("hr", "bob")])])

    def test_the_deliveries_counter_moves_once_per_event_by_the_frames_written(self):
        socks = [FakeSocket(str(i)) for i in range(4)] + [FakeSocket("closing", open_=False)]
        for s in socks:
            self.fanout.join(s, ["dept.x"])
        self.bridge.grant_all()
        moves: List[float] = []
        self.patch(LEGACY_DELIVERIES, "inc", lambda amount=1: moves.append(amount))
        self.bridge.handler("dept.x")({"message": "hello", "id": "1"})
        self.bridge.handler("dept.x")({"message": "again", "id": "2"})
        self.assertEqual(moves, [4, 4])

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


# ----------------------------------------------------------------------------- order and gap fill


class FakeStore:
    """The fan-out's reader over an in-memory topic log; answers at once unless ``down``."""

    def __init__(self) -> None:
        self.log: Dict[str, List[dict]] = {}
        self.down = False
        self.page_cap = 10 ** 6   # rows per answer at most (the store's byte bound, for big messages)
        self.reads: List[Tuple[str, int]] = []
        self.head_reads: List[List[str]] = []

    def append(self, topic: str, count: int = 1) -> List[dict]:
        rows = self.log.setdefault(topic, [])
        new = [{"message": f"{topic}#{len(rows) + i + 1}", "seq": len(rows) + i + 1} for i in range(count)]
        rows.extend(new)
        return new

    def since(self, topic: str, seq: int, limit: int) -> defer.Deferred:
        self.reads.append((topic, seq))
        if self.down:
            return defer.fail(RuntimeError("store down"))
        return defer.succeed([r for r in self.log.get(topic, []) if r["seq"] > seq][:min(limit, self.page_cap)])

    def heads(self, topics, timeout) -> defer.Deferred:
        self.head_reads.append(list(topics))
        if self.down:
            return defer.fail(RuntimeError("store down"))
        return defer.succeed({t: len(self.log.get(t, [])) for t in topics})


class FanoutOrderTests(SynchronousTestCase):
    """Each message once, in seq order, the missed ones read from the store."""

    def setUp(self) -> None:
        self.bridge = FakeBridge()
        self.store = FakeStore()
        self.clock = task.Clock()
        self.links = LinkState()
        self.fanout = Fanout(self.bridge, lambda payload: payload, reader=self.store, links=self.links,
                             clock=self.clock)
        self.sock = FakeSocket("page")

    def texts(self, sock=None) -> List[str]:
        return [f.decode() for f in (sock or self.sock).frames]

    def join(self, topic: str = "t", sock=None) -> None:
        d = self.fanout.join(sock or self.sock, [topic])
        self.bridge.grant_all()
        self.successResultOf(d)

    def live(self, envelope: dict, topic: str = "t") -> None:
        self.bridge.handler(topic)(envelope)

    def test_the_numbering_starts_at_the_store_head_read_before_subscribing(self):
        self.store.append("t", 3)
        self.fanout.join(self.sock, ["t"])
        self.assertEqual(self.store.head_reads, [["t"]])
        self.bridge.grant_all()
        [new] = self.store.append("t")
        self.live(new)
        self.live(self.store.log["t"][2])   # seq 3: stored before this socket's time
        self.assertEqual(self.texts(), ["t#4"])
        self.assertEqual(self.fanout.recovery["duplicates"], 1)

    def test_a_message_the_router_delivers_twice_goes_out_once(self):
        self.join()
        [e1] = self.store.append("t")
        self.live(e1)
        self.live(dict(e1))
        self.assertEqual(self.texts(), ["t#1"])

    def test_a_jump_is_filled_from_the_store_in_order(self):
        self.join()
        e1, e2, e3 = self.store.append("t", 3)
        self.live(e1)
        self.live(e3)  # e2 was lost (the link was down)
        self.assertEqual(self.texts(), ["t#1"])
        self.clock.advance(fanout.GAP_GRACE)
        self.assertEqual(self.store.reads, [("t", 1)])
        self.assertEqual(self.texts(), ["t#1", "t#2", "t#3"])
        self.live(e2)  # arrives late after all: already delivered
        self.assertEqual(self.texts(), ["t#1", "t#2", "t#3"])
        self.assertEqual(self.fanout.recovery["filled"], 2)

    def test_events_out_of_order_within_the_grace_need_no_read(self):
        self.join()
        e1, e2, e3 = self.store.append("t", 3)
        self.live(e1)
        self.live(e3)
        self.clock.advance(fanout.GAP_GRACE / 2)
        self.live(e2)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(fanout.GAP_GRACE)
        self.assertEqual(self.texts(), ["t#1", "t#2", "t#3"])
        self.assertEqual(self.store.reads, [])

    def test_a_quiet_topic_catches_up_when_a_link_comes_back(self):
        self.join("t")
        self.join("u")
        self.live(self.store.append("t")[0], "t")
        self.store.append("t", 2)   # published on a peer while this node's link to it was down
        self.links.down("n1")
        self.links.up("n1")
        self.assertEqual(self.store.head_reads[-1], ["t", "u"])
        # only the topic that moved; read until the store has nothing more
        self.assertEqual(self.store.reads, [("t", 1), ("t", 3)])
        self.assertEqual(self.texts(), ["t#1", "t#2", "t#3"])

    def test_a_long_gap_is_read_page_by_page(self):
        self.join()
        rows = self.store.append("t", fanout.READ_PAGE * 2 + 10)
        self.live(rows[0])
        self.live(rows[-1])
        self.clock.advance(fanout.GAP_GRACE)
        self.assertEqual(len(self.store.reads), 3)
        self.assertEqual(self.texts(), [r["message"] for r in rows])

    def test_a_check_reads_on_past_pages_cut_short_by_bytes(self):
        self.join()
        self.live(self.store.append("t")[0])
        self.store.append("t", 7)
        self.store.page_cap = 3   # large messages: a few per answer
        self.links.up("n1")
        self.assertEqual(self.texts(), [f"t#{i}" for i in range(1, 9)])
        self.assertEqual(self.store.reads, [("t", 1), ("t", 4), ("t", 7), ("t", 8)])

    def test_held_events_wait_for_the_store_then_go_out_when_it_answers(self):
        self.join()
        e1, e2, e3 = self.store.append("t", 3)
        self.live(e1)
        self.store.down = True
        self.live(e3)
        self.clock.advance(fanout.GAP_GRACE)
        self.clock.advance(fanout.READ_RETRY)
        self.assertEqual(self.texts(), ["t#1"])
        self.store.down = False
        self.clock.advance(fanout.READ_RETRY)
        self.assertEqual(self.texts(), ["t#1", "t#2", "t#3"])
        self.assertEqual(self.fanout.recovery["skipped"], 0)

    def test_a_gap_the_store_cannot_fill_is_given_up_after_the_hold(self):
        self.join()
        e1, e2, e3 = self.store.append("t", 3)
        self.live(e1)
        self.store.down = True
        self.live(e3)
        self.clock.advance(fanout.HOLD_MAX - 0.01)
        self.assertEqual(self.texts(), ["t#1"])
        self.clock.advance(0.02)
        self.assertEqual(self.texts(), ["t#1", "t#3"])
        self.assertEqual(self.fanout.recovery["skipped"], 1)
        self.store.down = False
        self.clock.advance(fanout.HOLD_MAX)
        self.live(e2)
        self.assertEqual(self.texts(), ["t#1", "t#3"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_socket_joining_a_numbered_topic_gets_what_comes_next(self):
        self.join()
        self.live(self.store.append("t")[0])
        late = FakeSocket("late")
        self.join("t", late)
        self.assertEqual(self.store.head_reads, [["t"]])  # the topic's numbering is known already
        self.live(self.store.append("t")[0])
        self.assertEqual((self.texts(), self.texts(late)), (["t#1", "t#2"], ["t#2"]))

    def test_without_a_store_a_gap_is_given_up_at_once(self):
        plain = Fanout(self.bridge, lambda payload: payload, clock=self.clock)
        plain.join(self.sock, ["v"])
        self.bridge.grant_all()
        self.bridge.handler("v")({"message": "a", "seq": 1})
        self.bridge.handler("v")({"message": "c", "seq": 3})
        self.bridge.handler("v")({"message": "b", "seq": 2})
        self.assertEqual(self.texts(), ["a", "c"])

    def test_leaving_cancels_a_pending_fill(self):
        self.join()
        e1, e2, e3 = self.store.append("t", 3)
        self.live(e1)
        self.live(e3)
        self.fanout.leave(self.sock, ["t"])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.texts(), ["t#1"])

    def test_store_trouble_is_logged_once_per_interval_not_per_topic(self):
        from twisted.logger import LogLevel, globalLogPublisher
        seen: List[dict] = []
        globalLogPublisher.addObserver(seen.append)
        try:
            self.store.down = True
            for i in range(20):
                self.fanout.join(FakeSocket(f"s{i}"), [f"t{i}"])
            self.bridge.grant_all()
            heads = [e for e in seen if "no store head" in e.get("log_format", "")]
            self.assertEqual(len(heads), 1)
            self.clock.advance(fanout.LOG_EVERY)
            self.fanout.join(FakeSocket("late"), ["t-late"])
            heads = [e for e in seen if "no store head" in e.get("log_format", "")]
            self.assertEqual(len(heads), 2)
            self.assertIn("19 more like it", heads[1]["log_format"])
            self.assertEqual(heads[1]["log_level"], LogLevel.info)
        finally:
            globalLogPublisher.removeObserver(seen.append)
