"""Unit tests of :class:`components.wamp.presence.PresenceComponent` with a fake router meta
API and a ``task.Clock`` in place of the module's reactor: snapshot requests and their
back-off, peers' links coming and going, local sessions, the start scan racing with leaves.

Node ``n1`` with peer ``n2``; on ``n1``'s router, 201 and 202 are ``n2``'s link sessions.
"""

from typing import Any, Dict, List, Optional

from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CloseDetails, PublishOptions
from twisted.internet import task
from twisted.trial.unittest import SynchronousTestCase

from components.core.errors import INVALID_FRAME, NOT_AUTHORIZED
from components.core.names import (CLIENT_ROLES, MEMBER, PRESENCE_INTERNAL_TOPIC, PROC_PRESENCE_ONLINE, PUBLISHER,
                                   RLINK_ROLE)
from components.wamp import presence as presence_module
from components.wamp.presence import REQUEST_FIRST, REQUEST_MAX, PresenceComponent
from tests.support.fakes import FakeRouter, FakeSession, call_details, make_settings

N2_LINK, N2_LINK_2 = 201, 202
REQUEST = {"kind": "request", "from": "n1", "to": "n2", "deltas": True}


def event(dept: str, user: str, online: bool, count: int) -> Dict[str, Any]:
    return {"dept": dept, "user": user, "online": online, "count": count}


class PresenceTestCase(SynchronousTestCase):
    peers = ("n2",)

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.patch(presence_module, "reactor", self.clock)
        self.router = FakeRouter()
        self.session = FakeSession(self.router)
        self.component = self.session.stand_in_for(PresenceComponent())

    def start(self) -> None:
        self.successResultOf(self.component.start(make_settings(node_name="n1", peers=self.peers)))

    # -- what the router would deliver

    def join(self, sid: int, authid: str, role: str = MEMBER, dept: Optional[str] = None) -> None:
        self.session.event("wamp.session.on_join", self.router.join(sid, authid, role, dept))

    def leave(self, sid: int) -> None:
        self.router.leave(sid)
        self.session.event("wamp.session.on_leave", sid)

    def internal(self, msg: Dict[str, Any]) -> None:
        self.session.event(PRESENCE_INTERNAL_TOPIC, msg)

    def snapshot(self, entries: List[List[Any]], to: str = "n1") -> None:
        self.internal({"kind": "snapshot", "from": "n2", "to": to, "entries": entries})

    # -- what the component published

    def requests(self) -> List[Dict[str, Any]]:
        return [m for m in self.session.published_on(PRESENCE_INTERNAL_TOPIC) if m["kind"] == "request"]

    def deltas(self) -> List[Dict[str, Any]]:
        return [m for m in self.session.published_on(PRESENCE_INTERNAL_TOPIC) if m["kind"] == "delta"]

    def events(self, dept: str) -> List[Dict[str, Any]]:
        published = [p for p in self.session.published if p.topic == f"deptcast.presence.{dept}"]
        for p in published:
            # to this node's subscribers only: never forwarded over a link as well
            self.assertIsInstance(p.options, PublishOptions)
            self.assertEqual(p.options.exclude_authrole, [RLINK_ROLE])
        return [p.payload for p in published]

    def online(self, dept: Any, caller: int = 900, role: str = MEMBER, caller_dept: str = "hr") -> Any:
        if caller not in self.router.answer("wamp.session.list"):
            self.router.join(caller, "asker", role, caller_dept)
        d = self.component.online(dept, details=call_details(caller, "asker", role))
        self.session.release()   # the caller's details, if the session holds calls
        return d


class AskingTests(PresenceTestCase):
    def test_start_subscribes_registers_and_asks_the_peer_at_once(self):
        self.start()
        self.assertEqual(sorted(self.session.handlers),
                         sorted(["wamp.session.on_join", "wamp.session.on_leave", PRESENCE_INTERNAL_TOPIC]))
        self.assertEqual(list(self.session.registered), [PROC_PRESENCE_ONLINE])
        self.assertEqual(self.requests(), [REQUEST])

    def test_a_single_node_neither_asks_nor_listens_to_peers(self):
        self.peers = ()
        self.start()
        self.join(1, "alice", dept="hr")
        self.assertNotIn(PRESENCE_INTERNAL_TOPIC, self.session.handlers)
        self.assertEqual(self.session.published_on(PRESENCE_INTERNAL_TOPIC), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.events("hr"), [event("hr", "alice", True, 1)])

    def test_requests_repeat_with_growing_delays_up_to_the_maximum(self):
        self.start()
        delays = []
        for _ in range(10):
            [pending] = self.clock.getDelayedCalls()
            delay = pending.getTime() - self.clock.seconds()
            delays.append(delay)
            before = len(self.requests())
            self.clock.advance(delay * 0.999)
            self.assertEqual(len(self.requests()), before, "asked early")
            self.clock.advance(delay * 0.001)
            self.assertEqual(len(self.requests()), before + 1)
        self.assertAlmostEqual(delays[0], REQUEST_FIRST)
        for previous, delay in zip(delays, delays[1:]):
            self.assertAlmostEqual(delay, min(previous * 1.5, REQUEST_MAX))
        self.assertEqual(delays[-3:], [REQUEST_MAX] * 3)
        self.assertTrue(all(r == REQUEST for r in self.requests()))

    def test_asking_stops_when_the_snapshot_arrives(self):
        self.start()
        self.clock.advance(REQUEST_FIRST)
        self.assertEqual(len(self.requests()), 2)
        self.snapshot([["hr", "bob", 2], ["cardio", "carol", 1]])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(100 * REQUEST_MAX)
        self.assertEqual(len(self.requests()), 2)
        self.assertEqual(self.events("hr"), [event("hr", "bob", True, 1)])
        self.assertEqual(self.events("cardio"), [event("cardio", "carol", True, 1)])
        self.assertEqual(self.successResultOf(self.online("hr")), {"dept": "hr", "count": 1, "users": ["bob"]})
        # a repeated snapshot with nothing new publishes nothing
        self.snapshot([["hr", "bob", 2], ["cardio", "carol", 1]])
        self.assertEqual(len(self.events("hr")) + len(self.events("cardio")), 2)

    def test_a_snapshot_for_another_node_or_from_a_stranger_does_not_stop_the_asking(self):
        self.start()
        self.snapshot([["hr", "bob", 1]], to="n3")
        self.internal({"kind": "snapshot", "from": "n9", "to": "n1", "entries": [["hr", "eve", 1]]})
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.assertEqual(self.events("hr"), [])

    def test_answers_a_peers_request_with_its_own_snapshot(self):
        self.start()
        self.join(1, "alice", dept="hr")
        self.join(2, "alice", dept="hr")
        self.internal({"kind": "request", "from": "n2", "to": "n1"})
        self.internal({"kind": "request", "from": "n2", "to": "n3"})   # not for us
        snapshots = [m for m in self.session.published_on(PRESENCE_INTERNAL_TOPIC) if m["kind"] == "snapshot"]
        self.assertEqual(snapshots, [{"kind": "snapshot", "from": "n1", "to": "n2", "entries": [["hr", "alice", 2]],
                                      "deltas": True}])

    def test_a_peers_link_joining_asks_again_from_the_first_delay(self):
        self.start()
        self.snapshot([])
        self.join(N2_LINK, "n2", RLINK_ROLE)
        self.assertEqual(len(self.requests()), 2)
        [pending] = self.clock.getDelayedCalls()
        self.assertAlmostEqual(pending.getTime() - self.clock.seconds(), REQUEST_FIRST)
        # while asking, another link joining restarts the asking: one timer, not two
        self.clock.advance(REQUEST_FIRST)
        self.join(N2_LINK_2, "n2", RLINK_ROLE)
        self.assertEqual(len(self.requests()), 4)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)

    def test_a_link_of_a_stranger_is_not_a_peer(self):
        self.start()
        self.snapshot([])
        self.join(N2_LINK, "n9", RLINK_ROLE)
        self.assertEqual(len(self.requests()), 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_leaving_the_router_cancels_the_asking(self):
        self.start()
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.component.onLeave(CloseDetails(reason="wamp.close.normal"))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_asking_stops_once_the_session_is_detached(self):
        self.start()
        self.session.attached = False
        self.clock.advance(REQUEST_FIRST)
        self.assertEqual(len(self.requests()), 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        # a link joining later, still detached: nothing is published, nothing scheduled
        self.join(N2_LINK, "n2", RLINK_ROLE)
        self.assertEqual((len(self.requests()), self.clock.getDelayedCalls()), (1, []))


class PeerLinkTests(PresenceTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.start()
        self.join(N2_LINK, "n2", RLINK_ROLE)
        self.snapshot([["hr", "bob", 1], ["hr", "carol", 2], ["cardio", "dave", 1]])
        self.session.published.clear()

    def test_a_peer_link_leaving_drops_its_users_once(self):
        self.leave(N2_LINK)
        self.assertEqual(self.events("hr"), [event("hr", "bob", False, 1), event("hr", "carol", False, 0)])
        self.assertEqual(self.events("cardio"), [event("cardio", "dave", False, 0)])
        self.assertEqual(self.successResultOf(self.online("hr"))["users"], [])
        self.leave(N2_LINK)   # a second leave of the same session changes nothing
        self.assertEqual(len(self.session.published), 3)
        self.assertIn("forgot the sessions of n2: its link to this node left", self.session.log.lines("info")[-1])

    def test_a_user_with_a_local_session_stays_online_when_the_peer_goes(self):
        self.join(1, "bob", dept="hr")
        self.assertEqual(self.events("hr"), [])   # bob was online already (on n2)
        self.assertEqual(self.deltas(), [{"kind": "delta", "from": "n1", "dept": "hr", "user": "bob", "sessions": 1}])
        self.leave(N2_LINK)
        self.assertEqual(self.events("hr"), [event("hr", "carol", False, 1)])
        self.assertEqual(self.successResultOf(self.online("hr"))["users"], ["bob"])

    def test_a_second_link_session_of_the_same_peer_keeps_it(self):
        self.join(N2_LINK_2, "n2", RLINK_ROLE)
        self.snapshot([["hr", "bob", 1], ["hr", "carol", 2], ["cardio", "dave", 1]])
        self.session.published.clear()
        self.leave(N2_LINK)
        self.assertEqual(self.session.published, [])
        self.assertEqual(self.successResultOf(self.online("hr"))["users"], ["bob", "carol"])
        self.leave(N2_LINK_2)
        self.assertEqual(len(self.events("hr")), 2)
        self.assertEqual(self.successResultOf(self.online("hr"))["users"], [])

    def test_deltas_from_the_peer_change_the_book(self):
        self.internal({"kind": "delta", "from": "n2", "dept": "hr", "user": "bob", "sessions": 3})
        self.assertEqual(self.session.published, [])            # bob was online already
        self.internal({"kind": "delta", "from": "n2", "dept": "hr", "user": "bob", "sessions": 0})
        self.internal({"kind": "delta", "from": "n2", "dept": "hr", "user": "erin", "sessions": 1})
        self.internal({"kind": "delta", "from": "n2", "dept": "hr", "user": "bad_key", "sessions": 1})
        self.internal({"kind": "delta", "from": "n1", "dept": "hr", "user": "me", "sessions": 1})
        self.assertEqual(self.events("hr"), [event("hr", "bob", False, 1), event("hr", "erin", True, 2)])


class LocalSessionTests(PresenceTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.start()
        self.snapshot([])
        self.session.published.clear()

    def test_one_event_per_change_and_a_delta_per_count_change(self):
        self.join(1, "alice", dept="hr")
        self.join(2, "alice", dept="hr")
        self.leave(1)
        self.leave(2)
        self.assertEqual(self.events("hr"), [event("hr", "alice", True, 1), event("hr", "alice", False, 0)])
        self.assertEqual([d["sessions"] for d in self.deltas()], [1, 2, 1, 0])
        # deltas are for the peers: published without the rlink exclusion
        self.assertTrue(all(p.options is None for p in self.session.published if p.topic == PRESENCE_INTERNAL_TOPIC))

    def test_sessions_that_are_not_clients_are_not_counted(self):
        self.join(1, "api", role="deptcast-backend", dept="hr")
        self.join(2, "x_y", dept="hr")          # not a valid name
        self.join(3, "alice", dept=None)         # no department
        self.session.event("wamp.session.on_join", "not a dict")
        self.leave(1)
        self.leave(99)
        self.assertEqual(self.session.published, [])

    def test_a_publisher_may_ask_about_any_department_a_member_only_its_own(self):
        self.join(1, "alice", dept="cardio")
        cardio = {"dept": "cardio", "count": 1, "users": ["alice"]}
        self.assertEqual(self.successResultOf(self.online("cardio", caller=901, role=PUBLISHER)), cardio)
        self.assertEqual(self.successResultOf(self.online("cardio", caller=902, caller_dept="cardio")), cardio)
        refused = self.failureResultOf(self.online("cardio", caller=903, caller_dept="hr"), ApplicationError)
        self.assertEqual(refused.value.error, NOT_AUTHORIZED)
        bad = self.failureResultOf(self.online("x..y", caller=904, role=PUBLISHER), ApplicationError)
        self.assertEqual(bad.value.error, INVALID_FRAME)


class BatchedDeltaTests(PresenceTestCase):
    """Once the peer says it reads ``deltas`` (its snapshot does), the local changes of a window
    go out together, each user's count as it is when they go."""

    def setUp(self) -> None:
        super().setUp()
        self.start()
        self.internal({"kind": "snapshot", "from": "n2", "to": "n1", "entries": [], "deltas": True})
        self.session.published.clear()

    def batches(self) -> List[Dict[str, Any]]:
        return [m for m in self.session.published_on(PRESENCE_INTERNAL_TOPIC) if m["kind"] == "deltas"]

    def test_the_changes_of_a_window_go_out_in_one_message(self):
        self.join(1, "alice", dept="hr")
        self.join(2, "alice", dept="hr")
        self.join(3, "bob", dept="cardio")
        self.leave(3)
        self.assertEqual(self.batches(), [])
        self.assertEqual(self.deltas(), [])
        self.assertEqual(self.events("hr"), [event("hr", "alice", True, 1)])   # local events at once
        self.clock.advance(presence_module.DELTAS_WINDOW)
        self.assertEqual(self.batches(), [{"kind": "deltas", "from": "n1",
                                           "entries": [["hr", "alice", 2], ["cardio", "bob", 0]]}])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_peer_that_did_not_say_so_gets_one_delta_per_change(self):
        self.join(N2_LINK, "n2", RLINK_ROLE)       # the peer's link (re)joined: it may be another version now
        self.session.published.clear()
        self.join(1, "alice", dept="hr")
        self.assertEqual(self.deltas(), [{"kind": "delta", "from": "n1", "dept": "hr", "user": "alice", "sessions": 1}])
        self.assertEqual(self.batches(), [])

    def test_a_snapshot_asked_for_goes_after_what_waited(self):
        self.join(1, "alice", dept="hr")
        self.internal({"kind": "request", "from": "n2", "to": "n1", "deltas": True})
        kinds = [m["kind"] for m in self.session.published_on(PRESENCE_INTERNAL_TOPIC)]
        self.assertEqual(kinds, ["deltas", "snapshot"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_deltas_from_the_peer_change_the_book(self):
        self.internal({"kind": "deltas", "from": "n2", "entries": [["hr", "erin", 1], ["hr", "bad_key", 1],
                                                                   ["cardio", "dave", 2]]})
        self.assertEqual(self.events("hr"), [event("hr", "erin", True, 1)])
        self.assertEqual(self.events("cardio"), [event("cardio", "dave", True, 1)])
        self.internal({"kind": "deltas", "from": "n2", "entries": [["hr", "erin", 0]]})
        self.assertEqual(self.events("hr"), [event("hr", "erin", True, 1), event("hr", "erin", False, 0)])

    def test_leaving_the_router_cancels_what_waits(self):
        self.join(1, "alice", dept="hr")
        self.component.onLeave(CloseDetails(reason="wamp.close.normal"))
        self.assertEqual(self.clock.getDelayedCalls(), [])


class StartScanTests(PresenceTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.router.join(1, "alice", MEMBER, "hr")
        self.router.join(2, "bob", MEMBER, "hr")
        self.router.join(3, "carol", PUBLISHER, "cardio")
        self.router.join(N2_LINK, "n2", RLINK_ROLE)
        self.session.hold = True

    def start_until_scan(self) -> Any:
        d = self.component.start(make_settings(node_name="n1", peers=self.peers))
        self.assertEqual(self.session.held_procedures(), ["wamp.session.list"])
        return d

    def test_sessions_joined_before_the_start_are_taken_in(self):
        d = self.start_until_scan()
        self.session.release()
        self.successResultOf(d)
        self.assertEqual(self.events("hr"), [event("hr", "alice", True, 1), event("hr", "bob", True, 2)])
        self.assertEqual(self.events("cardio"), [event("cardio", "carol", True, 1)])
        # a link found by the scan is not asked on its own: one request, from the start
        self.assertEqual(self.requests(), [REQUEST])
        self.assertEqual(self.session.calls[0], ("wamp.session.list", ([*CLIENT_ROLES, RLINK_ROLE],)))
        self.leave(N2_LINK)
        self.assertIn("forgot the sessions of n2: its link to this node left", self.session.log.lines("info")[-1])

    def test_a_session_that_leaves_before_the_list_answers_is_not_counted(self):
        d = self.start_until_scan()
        self.session.event("wamp.session.on_leave", 1)     # left; the list was made before
        self.session.answer([1, 2, 3])
        self.session.release()
        self.successResultOf(d)
        self.assertEqual(self.events("hr"), [event("hr", "bob", True, 1)])
        self.assertNotIn(("wamp.session.get", (1,)), self.session.calls)

    def test_a_session_that_leaves_while_its_details_are_asked_is_not_counted(self):
        d = self.start_until_scan()
        self.session.release(1)
        self.assertEqual(self.session.held[0].args, (1,))
        info = self.router.info(1)
        self.leave(1)                           # the leave event overtakes the answer
        self.session.answer(info)
        self.session.release()
        self.successResultOf(d)
        self.assertEqual(self.events("hr"), [event("hr", "bob", True, 1)])
        self.assertEqual(self.deltas(), [{"kind": "delta", "from": "n1", "dept": "hr", "user": "bob", "sessions": 1},
                                         {"kind": "delta", "from": "n1", "dept": "cardio", "user": "carol",
                                          "sessions": 1}])

    def test_a_session_gone_before_its_details_are_asked_is_skipped(self):
        d = self.start_until_scan()
        self.session.release(1)
        self.router.leave(1)                    # no_such_session; its leave event comes later
        self.session.release()
        self.successResultOf(d)
        self.session.event("wamp.session.on_leave", 1)
        self.assertEqual(self.events("hr"), [event("hr", "bob", True, 1)])

    def test_a_session_joining_during_the_scan_is_counted_once(self):
        d = self.start_until_scan()
        self.session.event("wamp.session.on_join", self.router.join(4, "dave", MEMBER, "hr"))
        self.session.release()
        self.successResultOf(d)
        self.assertEqual([e["user"] for e in self.events("hr")], ["dave", "alice", "bob"])
        self.assertEqual(self.successResultOf(self.online("hr"))["count"], 3)
        # leaves after the scan are not remembered any more: a later session id is counted
        self.leave(4)
        self.join(4, "dave", dept="hr")
        self.assertEqual(self.successResultOf(self.online("hr"))["count"], 3)
