"""Receipts and the roster on a real node: who signed in is on the roster once, what clients
acknowledged (and what the node wrote to legacy sockets) is what the sender reads, in
counts and in pages of who; who may ask and who may follow the live counts."""

import os
from typing import Dict, List

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from components.core import names
from components.core.errors import INVALID_FRAME, NOT_AUTHORIZED
from tests.support.legacy import connect_legacy
from tests.support.nodes import token
from tests.support.wamp import call_error, connect, wait_for

ROUTER_NOT_AUTHORIZED = "wamp.error.not_authorized"


def _unique(prefix: str) -> str:
    return f"{prefix}-{os.urandom(3).hex()}"


def _sleep(seconds: float) -> defer.Deferred:
    return task.deferLater(reactor, seconds, lambda: None)


@defer.inlineCallbacks
def _until(ask, want, timeout: float = 30.0, what: str = "the answer"):
    """Ask again (every 0.3 s) until the answer is ``want``; fail with the last one."""
    deadline = reactor.seconds() + timeout
    while True:
        got = yield ask()
        if got == want or reactor.seconds() > deadline:
            assert got == want, f"{what}: {got!r}"
            return got
        yield _sleep(0.3)


@defer.inlineCallbacks
def _sessions(url: str, dept: str, users: List[str], role: str = "member"):
    out = []
    for user in users:
        out.append((yield connect(url, token(user, dept, role))))
    return out


def _close(sessions) -> defer.Deferred:
    return defer.DeferredList([s.close() for s in sessions], consumeErrors=True)


@pytest_twisted.inlineCallbacks
def test_the_roster_holds_each_member_who_signed_in_once(node):
    dept, other = _unique("ros"), _unique("ros")
    ann1, ann2, bob = yield _sessions(node.url, dept, ["ann", "ann", "bob"])
    pat, = yield _sessions(node.url, dept, ["pat"], "publisher")        # publishers are not on it
    eve, = yield _sessions(node.url, other, ["eve"])
    legacy = yield connect_legacy(node.port, f"{dept}_cy", token("cy", dept))  # a token-checked legacy page
    try:
        def users():
            return ann1.call(names.PROC_ROSTER, dept).addCallback(
                lambda r: sorted((u["user"], u["source"]) for u in r["users"]))
        yield _until(users, [("ann", "signed_in"), ("bob", "signed_in"), ("cy", "signed_in")], what="the roster")
        roster = yield pat.call(names.PROC_ROSTER, dept)
        assert roster["dept"] == dept
        assert all(isinstance(u["first_seen"], int) and u["last_seen"] >= u["first_seen"] for u in roster["users"])
        refused = yield call_error(eve.call(names.PROC_ROSTER, dept))      # another department's member
        assert refused.error == NOT_AUTHORIZED
        refused = yield call_error(eve.call(names.PROC_ROSTER, "All"))
        assert refused.error == INVALID_FRAME
        refused = yield call_error(pat.call(names.PROC_ADMIN_ROSTER_IMPORT, [[dept, "zed"]]))
        assert refused.error == ROUTER_NOT_AUTHORIZED                       # admins only
    finally:
        yield legacy.close()
        yield _close([ann1, ann2, bob, pat, eve])


@pytest_twisted.inlineCallbacks
def test_receipts_count_what_the_audience_acknowledged(node):
    dept, other = _unique("rcp"), _unique("rcp")
    ann, bob, cy, dan = yield _sessions(node.url, dept, ["ann", "bob", "cy", "dan"])
    pat, = yield _sessions(node.url, dept, ["pat"], "publisher")
    eve, = yield _sessions(node.url, other, ["eve"])
    boss, = yield _sessions(node.url, other, ["boss"], "publisher")
    updates: List[Dict] = []
    try:
        # everyone is on the roster before the notice goes out (sign-ins are written in bulk)
        def roster():
            return ann.call(names.PROC_ROSTER, dept).addCallback(lambda r: len(r["users"]))
        yield _until(roster, 4, what="the roster's size")
        yield pat.subscribe(lambda counts: updates.append(counts), names.TOPIC_RECEIPTS + f"{dept}_pat")
        envelope = yield pat.call(names.PROC_SEND, dept, "fire drill at 11")
        nid = envelope["id"]
        yield ann.call(names.PROC_ACK, [nid], "delivered")
        yield ann.call(names.PROC_ACK, [nid, "not-an-id", "9" * 16], "seen")
        yield bob.call(names.PROC_ACK, [nid], "delivered")
        yield bob.call(names.PROC_ACK, [nid], "delivered")                 # a repeat counts once
        yield cy.call(names.PROC_ACK, [nid], "seen")                       # seen without delivered: seen
        yield eve.call(names.PROC_ACK, [nid], "seen")                      # not in the audience: ignored
        yield pat.call(names.PROC_ACK, [nid], "seen")                      # the sender: ignored
        refused = yield call_error(ann.call(names.PROC_ACK, [nid], "read"))
        assert refused.error == INVALID_FRAME
        want = {"id": nid, "audience": 4, "seen": 2, "delivered": 1, "pending": 1}
        yield _until(lambda: pat.call(names.PROC_RECEIPTS, nid), want, what="the counts")
        yield wait_for(lambda: updates and updates[-1] == want, 20, "the live counts")

        # pages of who, sorted, with their times
        seen = yield pat.call(names.PROC_RECIPIENTS, nid, "seen", limit=1)
        assert [u["user"] for u in seen["users"]] == ["ann"] and seen["next"] == f"{dept}_ann"
        seen2 = yield pat.call(names.PROC_RECIPIENTS, nid, "seen", after=seen["next"], limit=1)
        assert [u["user"] for u in seen2["users"]] == ["cy"]
        seen3 = yield pat.call(names.PROC_RECIPIENTS, nid, "seen", after=seen2["next"], limit=1)
        assert seen3 == {"users": [], "next": None}
        delivered = yield pat.call(names.PROC_RECIPIENTS, nid, "delivered")
        assert [(u["dept"], u["user"]) for u in delivered["users"]] == [(dept, "bob")]
        assert isinstance(delivered["users"][0]["at"], int) and delivered["next"] is None
        pending = yield pat.call(names.PROC_RECIPIENTS, nid, "pending")
        assert pending == {"users": [{"dept": dept, "user": "dan"}], "next": None}

        # who may ask: the sender, publishers for department notices; not another member
        assert (yield boss.call(names.PROC_RECEIPTS, nid)) == want
        refused = yield call_error(ann.call(names.PROC_RECEIPTS, nid))
        assert refused.error == NOT_AUTHORIZED
        refused = yield call_error(ann.call(names.PROC_RECIPIENTS, nid, "pending"))
        assert refused.error == NOT_AUTHORIZED
        refused = yield call_error(pat.call(names.PROC_RECIPIENTS, nid, "everyone"))
        assert refused.error == INVALID_FRAME
        # a direct notice: its sender, not another publisher
        direct = yield ann.call(names.PROC_SEND, f"{dept}_bob", "swap shifts?")
        yield bob.call(names.PROC_ACK, [direct["id"]], "seen")
        yield _until(lambda: ann.call(names.PROC_RECEIPTS, direct["id"]),
                     {"id": direct["id"], "audience": 1, "seen": 1, "delivered": 0, "pending": 0})
        refused = yield call_error(boss.call(names.PROC_RECEIPTS, direct["id"]))
        assert refused.error == NOT_AUTHORIZED
        # only the sender follows its own counts
        refused = yield call_error(ann.subscribe(lambda *a: None, names.TOPIC_RECEIPTS + f"{dept}_pat"))
        assert refused.error == ROUTER_NOT_AUTHORIZED
    finally:
        yield _close([ann, bob, cy, dan, pat, eve, boss])


@pytest_twisted.inlineCallbacks
def test_a_legacy_socket_counts_as_delivered_once_written(node):
    dept = _unique("leg")
    pat, = yield _sessions(node.url, dept, ["pat"], "publisher")
    old = yield connect_legacy(node.port, f"{dept}_lou", token("lou", dept))
    try:
        def roster():
            return pat.call(names.PROC_ROSTER, dept).addCallback(lambda r: [u["user"] for u in r["users"]])
        yield _until(roster, ["lou"], what="the roster")
        envelope = yield pat.call(names.PROC_SEND, dept, "the lift is out")
        yield wait_for(lambda: old.messages() == ["the lift is out"], 15, "the legacy page's frame")
        yield _until(lambda: pat.call(names.PROC_RECEIPTS, envelope["id"]),
                     {"id": envelope["id"], "audience": 1, "seen": 0, "delivered": 1, "pending": 0})
    finally:
        yield old.close()
        yield _close([pat])


def _admin_token(user: str, dept: str):
    """An admin token, or ``None`` while tokens do not take the role (the test is skipped)."""
    try:
        return token(user, dept, names.ADMIN)
    except ValueError:
        return None


@pytest_twisted.inlineCallbacks
def test_an_admin_imports_and_removes_and_the_roster_counts_each_member_once(node):
    dept = _unique("adm")
    admin_token = _admin_token("root", "ops")
    if admin_token is None:
        pytest.skip("admin tokens cannot be made yet")
    admin = yield connect(node.url, admin_token)
    ann, = yield _sessions(node.url, dept, ["ann"])                   # signs in, and is imported too
    pat, = yield _sessions(node.url, dept, ["pat"], "publisher")
    try:
        answer = yield admin.call(names.PROC_ADMIN_ROSTER_IMPORT, [[dept, "ann"], [dept, "bob"], [dept, "bob"]])
        assert answer["added"] + answer["known"] == 2

        def roster():
            return admin.call(names.PROC_ROSTER, dept).addCallback(lambda r: sorted(u["user"] for u in r["users"]))
        yield _until(roster, ["ann", "bob"], what="the roster")

        def ann_signed_in():                                           # ann's sign-in is written too
            return admin.call(names.PROC_ROSTER, dept).addCallback(
                lambda r: [u["last_seen"] is not None for u in r["users"] if u["user"] == "ann"])
        yield _until(ann_signed_in, [True], what="ann's sign-in on the roster")
        assert (yield roster()) == ["ann", "bob"]                      # still once each
        envelope = yield pat.call(names.PROC_SEND, f"{dept}_ann", "see me")
        yield ann.call(names.PROC_ACK, [envelope["id"]], "seen")
        want = {"id": envelope["id"], "audience": 1, "seen": 1, "delivered": 0, "pending": 0}
        yield _until(lambda: admin.call(names.PROC_RECEIPTS, envelope["id"]), want, what="an admin's counts")
        assert (yield admin.call(names.PROC_ADMIN_ROSTER_REMOVE, f"{dept}_bob")) == {"removed": True}
        assert (yield admin.call(names.PROC_ADMIN_ROSTER_REMOVE, f"{dept}_bob")) == {"removed": False}
        assert (yield roster()) == ["ann"]
        refused = yield call_error(admin.call(names.PROC_ADMIN_ROSTER_IMPORT, [["All", "x"]]))
        assert refused.error == INVALID_FRAME
    finally:
        yield _close([admin, ann, pat])
