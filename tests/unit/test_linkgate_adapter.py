"""Unit tests of :class:`components.wamp.linkgate.LinkGate` with a fake router meta API and a
``task.Clock``: the probe/answer handshake over time, the timeout, the waiters.

Node ``n1`` has peers ``n2`` and ``n3``. On ``n1``'s router, session 201 is ``n2``'s link
and session 301 is ``n3``'s link (role ``deptcast-rlink``, authid the peer's name); a peer's
answer arrives as an event on ``deptcast.internal.sync.n1``.
"""

from typing import Any, Dict, List

from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions
from twisted.internet import defer, task
from twisted.trial.unittest import SynchronousTestCase

from components.core.names import MEMBER, RLINK_ROLE, sync_topic
from components.wamp.linkgate import PROBE_INTERVAL, LinkGate
from tests.support.fakes import FakeRouter, FakeSession

N2_LINK, N3_LINK, CLIENT = 201, 301, 501
TIMEOUT = 2.0


def answer(peer: str, topics: List[str], complete: bool = True) -> Dict[str, Any]:
    return {"kind": "topics", "from": peer, "topics": topics, "complete": complete}


class LinkGateTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.router = FakeRouter()
        self.router.join(CLIENT, "alice", MEMBER, dept="hr")
        self.router.subscribe(CLIENT, "deptcast.dept.hr")
        self.router.join(N2_LINK, "n2", RLINK_ROLE)
        self.router.join(N3_LINK, "n3", RLINK_ROLE)
        self.session = FakeSession(self.router)
        self.gate = LinkGate(self.session, "n1", ["n2", "n3"], TIMEOUT, self.clock)

    def start(self) -> None:
        self.successResultOf(self.gate.start())

    def probes(self, peer: str) -> List[Dict[str, Any]]:
        return self.session.published_on(sync_topic(peer))

    def answer_from(self, peer: str, topics: List[str], complete: bool = True) -> None:
        self.session.event(sync_topic("n1"), answer(peer, topics, complete))

    def link_carries(self, link: int, *topics: str) -> None:
        for topic in topics:
            self.router.subscribe(link, topic)

    def tick(self) -> None:
        self.clock.advance(PROBE_INTERVAL)


class ProbingTests(LinkGateTestCase):
    def test_start_subscribes_to_its_sync_topic_and_probes_each_peer_with_the_local_topics(self):
        self.start()
        self.assertEqual(list(self.session.handlers), [sync_topic("n1")])
        local = ["deptcast.dept.hr", sync_topic("n1")]
        self.assertEqual(self.probes("n2"), [{"kind": "probe", "from": "n1", "topics": local}])
        self.assertEqual(self.probes("n3"), [{"kind": "probe", "from": "n1", "topics": local}])
        # probes are acknowledged publishes: the round waits until the router took them
        options = [p.options for p in self.session.published]
        self.assertTrue(all(isinstance(o, PublishOptions) and o.acknowledge for o in options))
        self.assertFalse(self.gate.is_open)
        self.assertNoResult(self.gate.wait())

    def test_opens_when_every_peer_answered_complete_and_its_link_carries_its_topics(self):
        self.start()
        waiter = self.gate.wait()
        n2_topics = ["deptcast.dept.cardio", sync_topic("n2")]
        n3_topics = ["deptcast.all", sync_topic("n3")]
        self.answer_from("n2", n2_topics)
        self.answer_from("n3", n3_topics)
        self.link_carries(N2_LINK, *n2_topics)
        self.link_carries(N3_LINK, "deptcast.all")       # sync.n3 not yet
        self.tick()
        self.assertFalse(self.gate.is_open)
        self.assertNoResult(waiter)
        # n2 passed: only n3 is probed from now on
        self.assertEqual((len(self.probes("n2")), len(self.probes("n3"))), (2, 2))
        self.tick()
        self.assertEqual((len(self.probes("n2")), len(self.probes("n3"))), (2, 3))
        self.link_carries(N3_LINK, sync_topic("n3"))
        self.tick()
        self.assertTrue(self.gate.is_open)
        self.assertIsNone(self.successResultOf(waiter))
        self.assertAlmostEqual(self.gate.opened_after, 3 * PROBE_INTERVAL)
        self.assertEqual(self.session.log.lines("warn", "error"), [])
        self.assertEqual(self.session.log.lines("info"),
                         ["deptcast api: links from all peers (n2, n3) are up after 0.30 s; accepting sends"])
        # no probing once open
        published = len(self.session.published)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(10 * TIMEOUT)
        self.assertEqual(len(self.session.published), published)

    def test_another_peers_link_does_not_count(self):
        self.start()
        self.answer_from("n2", ["deptcast.dept.cardio"])
        self.answer_from("n3", [])
        self.link_carries(N3_LINK, "deptcast.dept.cardio")   # n3's link, not n2's
        for _ in range(5):
            self.tick()
        self.assertFalse(self.gate.is_open)
        self.link_carries(N2_LINK, "deptcast.dept.cardio")
        self.tick()
        self.assertTrue(self.gate.is_open)

    def test_stays_closed_while_a_topic_is_missing_until_the_timeout(self):
        self.start()
        self.answer_from("n2", ["deptcast.dept.cardio", "deptcast.user.cardio_bob"])
        self.answer_from("n3", [])
        self.link_carries(N2_LINK, "deptcast.dept.cardio")
        while self.clock.seconds() + PROBE_INTERVAL < TIMEOUT:
            self.tick()
            self.assertFalse(self.gate.is_open, f"open at {self.clock.seconds():.1f} s")
        self.assertGreater(len(self.probes("n2")), TIMEOUT / PROBE_INTERVAL - 2)

    def test_a_peer_that_finds_our_link_incomplete_holds_the_gate(self):
        self.start()
        self.answer_from("n2", [], complete=False)
        self.answer_from("n3", [])
        for _ in range(3):
            self.tick()
        self.assertFalse(self.gate.is_open)
        # the newest answer counts
        self.answer_from("n2", [], complete=True)
        self.tick()
        self.assertTrue(self.gate.is_open)

    def test_opens_after_the_timeout_with_a_warning_naming_the_pending_peers(self):
        self.start()
        waiter = self.gate.wait()
        self.answer_from("n2", ["deptcast.dept.cardio"])
        self.link_carries(N2_LINK, "deptcast.dept.cardio")   # n2 passes; n3 never answers
        while self.clock.seconds() < TIMEOUT:
            self.assertFalse(self.gate.is_open)
            self.tick()
        self.tick()
        self.assertTrue(self.gate.is_open)
        self.assertIsNone(self.successResultOf(waiter))
        self.assertTrue(TIMEOUT <= self.gate.opened_after <= TIMEOUT + 2 * PROBE_INTERVAL, self.gate.opened_after)
        warnings = self.session.log.lines("warn")
        self.assertEqual(len(warnings), 1)
        self.assertIn("no working link from n3 after 2 s", warnings[0])
        self.assertNotIn("n2", warnings[0])
        self.assertEqual(self.session.log.lines("info"), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_meta_topics_are_ignored_on_both_sides(self):
        router = FakeRouter(protect_meta=False)   # a meta API that shows wamp.* topics
        router.join(N2_LINK, "n2", RLINK_ROLE)
        router.join(CLIENT, "presence", "deptcast-backend")
        router.subscribe(CLIENT, "wamp.session.on_leave")
        session = FakeSession(router)
        gate = LinkGate(session, "n1", ["n2"], TIMEOUT, self.clock)
        self.successResultOf(gate.start())
        # our probe does not ask the peer's link for our meta subscriptions
        self.assertEqual(session.published_on(sync_topic("n2"))[0]["topics"], [sync_topic("n1")])
        # the peer's meta subscriptions are never carried by a link: they do not hold the gate
        session.event(sync_topic("n1"), answer("n2", ["wamp.session.on_join", "deptcast.all"]))
        router.subscribe(N2_LINK, "deptcast.all")
        self.clock.advance(PROBE_INTERVAL)
        self.assertTrue(gate.is_open)

    def test_waiters_fire_once(self):
        self.start()
        fired: List[int] = []
        waiters = [self.gate.wait().addCallback(lambda _, i=i: fired.append(i)) for i in range(3)]
        self.answer_from("n2", [])
        self.answer_from("n3", [])
        self.tick()
        self.assertEqual(fired, [0, 1, 2])
        # late answers and further time change nothing; a new waiter fires at once
        self.answer_from("n2", ["deptcast.dept.x"], complete=False)
        self.clock.advance(10 * TIMEOUT)
        self.assertEqual(fired, [0, 1, 2])
        self.assertTrue(self.gate.is_open)
        self.assertIsNone(self.successResultOf(self.gate.wait()))
        for d in waiters:
            self.successResultOf(d)

    def test_a_session_that_left_during_the_link_scan_is_skipped(self):
        session = FakeSession(self.router, hold=True)
        gate = LinkGate(session, "n1", ["n2"], TIMEOUT, self.clock)
        self.successResultOf(gate.start())
        session.event(sync_topic("n1"), answer("n2", []))
        # the first round: local topics, probe, then the link scan lists the rlink sessions and gets each
        while session.held_procedures() != ["wamp.session.get"]:
            self.assertEqual(session.release(1), 1)
        self.router.leave(N3_LINK)    # gone between list and get: NO_SUCH_SESSION, skipped
        session.release()
        self.assertTrue(gate.is_open)
        self.assertEqual(session.log.lines("error", "warn"), [])
        self.assertEqual(len(session.log.lines("info")), 1)

    def test_a_failing_check_opens_the_gate_with_an_error(self):
        session = FakeSession(self.router, hold=True)
        gate = LinkGate(session, "n1", ["n2"], TIMEOUT, self.clock)
        self.successResultOf(gate.start())
        waiter = gate.wait()
        self.assertEqual(session.held_procedures(), ["wamp.subscription.list"])
        session.answer(ApplicationError("wamp.error.not_authorized", "no meta API for this role"))
        self.assertTrue(gate.is_open)
        self.successResultOf(waiter)
        self.assertEqual(len(session.log.lines("error")), 1)
        self.assertIn("the link check failed", session.log.lines("error")[0])

    def test_no_probing_after_the_session_detached(self):
        self.start()
        self.session.attached = False
        self.tick()
        probes = len(self.session.published)
        self.clock.advance(10 * TIMEOUT)
        self.assertEqual(len(self.session.published), probes)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class AnsweringTests(LinkGateTestCase):
    """``n1`` answering its peers' probes."""

    def probe(self, peer: str, topics: List[str]) -> None:
        self.session.event(sync_topic("n1"), {"kind": "probe", "from": peer, "topics": topics})

    def test_answers_with_its_topics_and_whether_the_peers_link_is_complete(self):
        self.start()
        self.session.published.clear()
        self.session.calls.clear()
        self.probe("n2", ["deptcast.dept.cardio", "deptcast.all"])
        self.assertEqual(self.probes("n2"), [{"kind": "topics", "from": "n1", "complete": False,
                                              "topics": ["deptcast.dept.hr", sync_topic("n1")]}])
        self.link_carries(N3_LINK, "deptcast.dept.cardio", "deptcast.all")   # the wrong link
        self.link_carries(N2_LINK, "deptcast.dept.cardio")
        self.probe("n2", ["deptcast.dept.cardio", "deptcast.all"])
        self.assertFalse(self.probes("n2")[-1]["complete"])
        self.link_carries(N2_LINK, "deptcast.all")
        self.probe("n2", ["deptcast.dept.cardio", "deptcast.all", "wamp.session.on_join"])
        self.assertTrue(self.probes("n2")[-1]["complete"])
        self.assertEqual(len(self.probes("n2")), 3)
        # answering n2 lists the subscriptions of n2's link only, not every link's
        listed = {args[0] for procedure, args in self.session.calls if procedure == "wamp.subscription.list" and args}
        self.assertEqual(listed, {N2_LINK})

    def test_one_answer_per_peer_at_a_time(self):
        session = FakeSession(self.router, hold=True)
        gate = LinkGate(session, "n1", ["n2", "n3"], TIMEOUT, self.clock)
        gate._run = lambda: defer.Deferred()      # only the answering side here
        self.successResultOf(gate.start())

        def probe(peer: str) -> None:
            session.event(sync_topic("n1"), {"kind": "probe", "from": peer, "topics": []})

        probe("n2")
        probe("n2")    # dropped: n2 probes again until it is satisfied
        probe("n3")    # another peer is answered alongside
        self.assertEqual(session.held_procedures(), ["wamp.subscription.list", "wamp.subscription.list"])
        session.release()
        answers = [(p.topic, p.payload["kind"]) for p in session.published]
        self.assertEqual(sorted(answers), [(sync_topic("n2"), "topics"), (sync_topic("n3"), "topics")])
        probe("n2")    # the first answer is out: the next probe is answered
        session.release()
        self.assertEqual(len(session.published_on(sync_topic("n2"))), 2)

    def test_a_failed_answer_is_logged_and_the_next_probe_is_answered(self):
        session = FakeSession(self.router, hold=True)
        gate = LinkGate(session, "n1", ["n2"], TIMEOUT, self.clock)
        gate._run = lambda: defer.Deferred()
        self.successResultOf(gate.start())
        session.event(sync_topic("n1"), {"kind": "probe", "from": "n2", "topics": []})
        session.answer(ApplicationError("wamp.error.canceled", "the router went away"))
        self.assertEqual(session.published, [])
        self.assertIn("could not answer the link probe of n2", session.log.lines("warn")[0])
        session.event(sync_topic("n1"), {"kind": "probe", "from": "n2", "topics": []})
        session.release()
        self.assertEqual(len(session.published_on(sync_topic("n2"))), 1)

    def test_messages_from_strangers_or_of_no_kind_are_ignored(self):
        self.start()
        self.session.published.clear()
        calls = len(self.session.calls)
        for msg in ({"kind": "probe", "from": "n9", "topics": []}, {"kind": "probe", "from": "n1", "topics": []},
                    {"kind": "dance", "from": "n2"}, ["probe"], None, "n2"):
            self.session.event(sync_topic("n1"), msg)
        self.assertEqual((self.session.published, len(self.session.calls)), ([], calls))
        # an answer from a stranger does not count for anyone
        self.session.event(sync_topic("n1"), answer("n9", []))
        self.answer_from("n3", [])
        self.tick()
        self.assertFalse(self.gate.is_open)
