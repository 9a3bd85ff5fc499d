"""Receipts on the client (``components.client.receipts`` and the engine): what reaches the
application is acknowledged as delivered (live and from history, not the user's own), in
batches at most once a second per session, kept across a reconnect; ``ack_seen``; a node
without ``deptcast.ack`` turns it off for that session; and the live receipt counts."""

from autobahn.wamp.exception import ApplicationError, TransportLost
from twisted.internet import defer

from components.client import contract, errors
from components.client.receipts import ACK_BATCH
from components.core import names
from tests.support.client import FakeSession, Harness

DEPT_TOPIC = names.dept_topic("cardio")


def test_what_reaches_the_application_is_acknowledged_once_a_second_at_most():
    h = Harness()
    s = h.join()
    a = h.send("cardio", "a", via=[s])
    h.clock.advance(0)
    assert s.acks() == [[a["id"]]]              # the first goes at once
    b = h.send("cardio", "b", via=[s])
    c = h.send("All", "c", via=[s])
    h.clock.advance(0.99)
    assert len(s.acks()) == 1                   # then at most one call a second
    h.clock.advance(0.01)
    assert s.acks("delivered") == [[a["id"]], [b["id"], c["id"]]]
    assert h.engine.stats.acks == 2 and h.engine.stats.acked == 3


def test_what_history_brings_is_acknowledged_too_and_own_notices_are_not():
    h = Harness()
    s1 = h.join()
    h.lose(s1)
    missed = [h.store.append("cardio", f"missed {i}") for i in range(3)]
    h.store.append("cardio", "mine", sender="alice", sender_dept="cardio")   # this user's own: not in the audience
    s2 = h.join("n2")
    h.clock.advance(0)
    assert h.messages() == ["missed 0", "missed 1", "missed 2", "mine"]
    assert s2.acks() == [[e["id"] for e in missed]]


def test_a_call_in_flight_holds_the_next_and_a_large_backlog_goes_in_batches():
    h = Harness()
    s = h.join()
    s.hold[contract.PROC_ACK] = []
    first = h.send("cardio", "first", via=[s])
    h.clock.advance(0)
    for i in range(ACK_BATCH + 5):
        h.send("cardio", f"m{i}", via=[s])
    h.clock.advance(5)
    assert len(s.acks()) == 1                   # one call at a time
    held = s.hold.pop(contract.PROC_ACK)
    held[0].callback(None)
    h.clock.advance(0)
    assert [len(ids) for ids in s.acks()] == [1, ACK_BATCH]
    h.clock.advance(1)
    assert [len(ids) for ids in s.acks()] == [1, ACK_BATCH, 5]
    assert s.acks()[0] == [first["id"]]


def test_acknowledgements_wait_across_a_reconnect_and_failures_that_pass():
    h = Harness()
    s1 = h.join()
    s1.refuse[contract.PROC_ACK] = [ApplicationError(errors.Unavailable.URI, "busy")]
    a = h.send("cardio", "a", via=[s1])
    h.clock.advance(0)
    h.clock.advance(1)
    assert s1.acks() == [[a["id"]], [a["id"]]]          # failed once, sent again with the next call
    s1.hold[contract.PROC_ACK] = []
    b = h.send("cardio", "b", via=[s1])
    h.clock.advance(1)
    h.lose(s1)
    s1.hold[contract.PROC_ACK][0].errback(TransportLost())
    c = h.store.append("cardio", "c")
    s2 = h.join("n2")
    h.clock.advance(0)
    assert s2.acks() == [[b["id"], c["id"]]]             # the lost batch first, then what history brought


def test_rate_limited_acknowledgements_wait_their_retry_after():
    h = Harness()
    s = h.join()
    s.refuse[contract.PROC_ACK] = [ApplicationError(errors.RateLimited.URI, "slow down", retry_after=5)]
    a = h.send("cardio", "a", via=[s])
    h.clock.advance(0)
    h.clock.advance(4.9)
    assert len(s.acks()) == 1
    h.clock.advance(0.1)
    assert s.acks() == [[a["id"]], [a["id"]]]


def test_another_refusal_drops_the_batch():
    h = Harness()
    s = h.join()
    s.refuse[contract.PROC_ACK] = [ApplicationError(errors.InvalidFrame.URI, "ids: a list")]
    h.send("cardio", "a", via=[s])
    h.clock.advance(0)
    b = h.send("cardio", "b", via=[s])
    h.clock.advance(1)
    assert s.acks()[1:] == [[b["id"]]]


def test_a_node_without_ack_turns_acknowledging_off_for_that_session_only():
    h = Harness()
    s1 = h.join()
    s1.missing.add(contract.PROC_ACK)
    h.send("cardio", "a", via=[s1])
    h.clock.advance(0)
    h.send("cardio", "b", via=[s1])
    h.clock.advance(5)
    assert len(s1.acks()) == 1 and h.engine.acks.off and h.engine.acks.size == 0
    h.lose(s1)
    s2 = h.join("n2")
    c = h.send("cardio", "c", via=[s2])
    h.clock.advance(0)
    assert s2.acks() == [[c["id"]]] and not h.engine.acks.off


def test_seen_goes_in_its_own_calls():
    h = Harness()
    s = h.join()
    a = h.send("cardio", "a", via=[s])
    h.engine.ack_seen([a["id"], 42, "", "x" * 65])
    h.clock.advance(0)
    h.clock.advance(1)
    assert s.acks("delivered") == [[a["id"]]] and s.acks("seen") == [[a["id"]]]


def test_acknowledging_can_be_turned_off():
    h = Harness(acknowledge=False)
    s = h.join()
    h.send("cardio", "a", via=[s])
    h.clock.advance(2)
    assert s.acks() == []


def test_a_stopped_client_acknowledges_nothing_more():
    h = Harness()
    s = h.join()
    h.send("cardio", "a", via=[s])
    h.clock.advance(0)
    h.engine.stopping()
    h.engine.ack_seen(["0000000000000001"])
    h.clock.advance(2)
    assert len(s.acks()) == 1


# -- live receipt counts


def test_receipt_counts_are_followed_only_when_asked_on_every_session():
    h = Harness(listen=False)
    s1 = h.join()
    topic = contract.receipts_topic("cardio_alice")
    assert topic not in s1.handlers
    got = []
    h.engine.follow_receipts(got.append)
    counts = {"id": "0000000000000001", "audience": 2, "seen": 1, "delivered": 1, "pending": 0}
    s1.handlers[topic](counts)
    s1.handlers[topic]("not counts")
    assert got == [counts]
    h.lose(s1)
    s2 = h.join("n2")
    s2.handlers[topic](dict(counts, seen=2, delivered=0))
    s1.handlers[topic](counts)   # the old session's subscription: nothing
    assert got == [counts, dict(counts, seen=2, delivered=0)]


def test_a_node_that_refuses_the_receipts_topic_is_left_alone():
    h = Harness()
    h.engine.follow_receipts(lambda counts: None)
    s = FakeSession(h.store)
    s.refuse[contract.receipts_topic("cardio_alice")] = [ApplicationError("wamp.error.not_authorized", "no")]
    h.engine.on_join(s, s.details)
    assert h.engine.fatal is None and h.engine.ready().called
    assert DEPT_TOPIC in s.handlers


def test_the_send_of_a_receipts_reader():
    """The counts and pages a sender asks for go to the node as the contract names them."""
    h = Harness(listen=False)
    s = h.join()
    s.answers[contract.PROC_RECEIPTS] = {"id": "1", "audience": 1, "seen": 0, "delivered": 1, "pending": 0}
    assert defer.ensureDeferred(h.engine.receipts("1")).result["delivered"] == 1
    assert s.calls_of(contract.PROC_RECEIPTS) == [(("1",), {})]
