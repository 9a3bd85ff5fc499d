"""Receipts' rules (components.core.receipts), the authorizer's part of them, and the node's
in-memory buffers of sign-ins and receipts (bounded; one entry per user or per event)."""

import pytest
from twisted.internet import defer

from components.core import names, policy
from components.core.errors import INVALID_FRAME, NOT_AUTHORIZED, RATE_LIMITED, Refused
from components.core.ratelimit import RateLimiter
from components.core.receipts import (Notice, counts_of, in_audience, may_ask, may_read_roster, next_cursor,
                                      parse_ack, parse_import, parse_recipients)
from components.core.tokens import Identity
from components.service.receipts import ReceiptBuffer, ReceiptService
from components.service.roster import SignIns

DEPT = Notice(1, "dept", "hr", None, "hr", "boss")
ALL = Notice(2, "all", None, None, "it", "pat")
DIRECT = Notice(3, "user", "hr", "bob", "hr", "ann")
ANN, BOB = Identity("ann", "hr"), Identity("bob", "hr")
PUB, ADMIN = Identity("pat", "it", names.PUBLISHER), Identity("root", "ops", names.ADMIN)


def test_the_audience_never_holds_the_sender_and_only_those_who_may_see_it():
    assert in_audience(DEPT, "hr", "ann") and not in_audience(DEPT, "hr", "boss") and not in_audience(DEPT, "it", "x")
    assert in_audience(ALL, "hr", "ann") and not in_audience(ALL, "it", "pat")
    assert in_audience(DIRECT, "hr", "bob") and not in_audience(DIRECT, "hr", "cy")


def test_who_may_ask():
    assert may_ask(Identity("boss", "hr"), DEPT) and not may_ask(ANN, DEPT)
    assert may_ask(PUB, DEPT) and may_ask(PUB, ALL) and not may_ask(PUB, DIRECT)
    assert may_ask(ADMIN, DIRECT) and may_ask(ANN, DIRECT)
    assert may_read_roster(ANN, "hr") and not may_read_roster(ANN, "it") and may_read_roster(PUB, "hr")


def test_arguments_are_checked():
    assert parse_ack(["0000000000000002", "x", "0000000000000002", "0", 7], "seen") == ([2], "seen")
    for ids, state in [(["1"], "read"), ("1", "seen"), (["1"] * 1001, "seen")]:
        with pytest.raises(Refused) as e:
            parse_ack(ids, state)
        assert e.value.uri == INVALID_FRAME
    assert parse_recipients("pending", None, None) == ("pending", None, 200)
    assert parse_recipients("seen", "hr_ann", 5000) == ("seen", ("hr", "ann"), 1000)
    with pytest.raises(Refused):
        parse_recipients("seen", "nobody", 10)
    assert parse_import([["hr", "ann"], ("hr", "ann"), ["it", "bob"]]) == [("hr", "ann"), ("it", "bob")]
    for rows in [[["All", "x"]], [["hr", "b_ob"]], "hr,ann", [["hr"]]]:
        with pytest.raises(Refused):
            parse_import(rows)


def test_counts_are_disjoint_and_pages_say_when_more_may_follow():
    assert counts_of("1", 5, 2, 2) == {"id": "1", "audience": 5, "seen": 2, "delivered": 2, "pending": 1}
    assert counts_of("1", 1, 2, 2)["pending"] == 0
    assert next_cursor([("hr", "a", 1), ("hr", "b", 2)], 2) == "hr_b"
    assert next_cursor([("hr", "a", 1)], 2) is None


def test_the_authorizer_lets_only_the_sender_follow_its_counts_and_admins_import():
    assert policy.authorize(ANN, names.TOPIC_RECEIPTS + "hr_ann", "subscribe", {})
    assert not policy.authorize(ANN, names.TOPIC_RECEIPTS + "hr_bob", "subscribe", {})
    assert not policy.authorize(ANN, names.TOPIC_RECEIPTS + "hr_ann", "subscribe", {"match": "prefix"})
    for proc in (names.PROC_ACK, names.PROC_RECEIPTS, names.PROC_RECIPIENTS, names.PROC_ROSTER):
        assert policy.authorize(ANN, proc, "call", {})
    for proc in (names.PROC_ADMIN_ROSTER_IMPORT, names.PROC_ADMIN_ROSTER_REMOVE):
        assert not policy.authorize(PUB, proc, "call", {}) and policy.authorize(ADMIN, proc, "call", {})


def test_a_reconnect_storm_is_one_entry_per_user_and_the_buffer_is_bounded():
    clock = [1.0]
    signins = SignIns(now=lambda: clock[0], limit=3)
    for n in range(1000):
        clock[0] = 1.0 + n
        signins.signed_in("hr", "ann")
    signins.signed_in("hr", "bob")
    signins.signed_in("hr", "cy")
    signins.signed_in("hr", "dan")
    assert signins.dropped == 1
    assert sorted(signins.take()) == [("hr", "ann", 1000000), ("hr", "bob", 1000000), ("hr", "cy", 1000000)]
    assert len(signins) == 0


def test_receipts_wait_folded_and_bounded():
    buf = ReceiptBuffer(now=lambda: 2.0, limit=4)
    buf.acknowledged([1, 1, 2], "seen", "hr", "ann")
    buf.written("0000000000000001", [("hr", "bob"), ("hr", "bob")])   # one entry per event
    buf.written("0000000000000005", [("hr", "x"), ("hr", "y")])         # over the bound: dropped
    assert (len(buf), buf.dropped) == (4, 2)
    rows = buf.take()
    # a user with two sockets is two rows (the store keeps the first)
    assert sorted(rows) == [(1, "delivered", "hr", "bob", 2000), (1, "delivered", "hr", "bob", 2000),
                            (1, "seen", "hr", "ann", 2000), (2, "seen", "hr", "ann", 2000)]
    assert len(buf) == 0
    buf.put_back(rows)
    assert len(buf) == 3


def test_questions_about_receipts_are_paced_per_user():
    class Store:
        def notices(self, ids):
            return defer.succeed([DEPT] if 1 in ids else [])

        def receipt_counts(self, notice):
            return defer.succeed((3, 1, 1))

    service = ReceiptService(lambda: defer.succeed(Store()), ReceiptBuffer(), lambda topic, counts: None,
                             questions=RateLimiter(1.0, 2), monotonic=lambda: 100.0)
    boss = Identity("boss", "hr")
    answers = [service.receipts(boss, False, "0000000000000001") for _ in range(3)]
    assert [type(a.result).__name__ for a in answers[:2]] == ["dict", "dict"]
    assert answers[0].result == {"id": "0000000000000001", "audience": 3, "seen": 1, "delivered": 1,
                                 "pending": 1}
    assert answers[2].result.value.uri == RATE_LIMITED
    answers[2].addErrback(lambda f: None)
    refused = service.receipts(Identity("cy", "hr"), False, "0000000000000001")   # not the sender
    assert refused.result.value.uri == NOT_AUTHORIZED
    refused.addErrback(lambda f: None)
