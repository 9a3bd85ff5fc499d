"""The application's calls (``components.client.calls``), on the engine with fake sessions and a
fake clock: one idempotency key per notice, reused on every retry; what is retried (unavailable,
rate_limited after its retry_after, a lost or unanswered attempt) and what is not; batches with
a key per item, retried whole; reads retried the same way."""

import re

import pytest
from autobahn.wamp.exception import ApplicationError, TransportLost
from twisted.internet import defer

from components.client import contract, errors
from components.client.calls import NEVER_LEFT_WAIT, batch_items, check_key, is_key, new_key
from components.core import names
from tests.support.client import FakeSession, Harness


def _sends(session):
    return session.calls_of(names.PROC_SEND)


def test_keys():
    key = new_key()
    assert is_key(key) and re.fullmatch(r"[0-9a-f]{32}", key) and new_key() != key
    assert all(is_key(k) for k in ["a", "A-b_c.9", "x" * 64])
    assert not any(is_key(k) for k in ["", "x" * 65, "has space", "ü", "a/b", None, 7])
    assert check_key("mine") == "mine" and is_key(check_key(None))
    with pytest.raises(errors.InvalidFrame, match="1 to 64"):
        check_key("no way")


def test_each_notice_gets_its_own_key_and_a_given_one_is_used():
    h = Harness(listen=False)
    s = h.join()
    defer.ensureDeferred(h.engine.send("cardio", "one"))
    defer.ensureDeferred(h.engine.send("cardio", "two"))
    defer.ensureDeferred(h.engine.send("cardio", "three", key="shift-7"))
    keys = [kw["key"] for _, kw in _sends(s)]
    assert len(set(keys)) == 3 and keys[2] == "shift-7" and all(is_key(k) for k in keys)


def test_a_bad_key_is_refused_before_anything_is_sent():
    h = Harness(listen=False)
    s = h.join()
    d = defer.ensureDeferred(h.engine.send("cardio", "x", key="not a key"))
    assert isinstance(d.result.value, errors.InvalidFrame) and _sends(s) == []
    d.addErrback(lambda f: None)


def test_rate_limited_waits_its_retry_after_then_sends_again_with_the_same_key():
    h = Harness(listen=False)
    s = h.join()
    s.refuse[names.PROC_SEND] = [ApplicationError(errors.RateLimited.URI, "slow down", retry_after=2.5)]
    d = defer.ensureDeferred(h.engine.send("cardio", "hi"))
    h.clock.advance(2.4)
    assert not d.called and len(_sends(s)) == 1
    h.clock.advance(0.2)
    assert d.result["message"] == "hi" and len({kw["key"] for _, kw in _sends(s)}) == 1


def test_rate_limited_past_the_timeout_is_raised_with_its_retry_after():
    h = Harness(listen=False)
    s = h.join()
    s.refuse[names.PROC_SEND] = [ApplicationError(errors.RateLimited.URI, "slow down", retry_after=20)]
    d = defer.ensureDeferred(h.engine.send("cardio", "hi", timeout=10))
    error = d.result.value
    assert isinstance(error, errors.RateLimited) and error.kwargs == {"retry_after": 20}
    d.addErrback(lambda f: None)


def test_the_same_key_for_another_message_is_refused_and_not_retried():
    h = Harness(listen=False)
    s = h.join()
    first = defer.ensureDeferred(h.engine.send("cardio", "one", key="k1")).result
    again = defer.ensureDeferred(h.engine.send("cardio", "one", key="k1")).result
    assert again == first and len(h.store.rows) == 1
    d = defer.ensureDeferred(h.engine.send("cardio", "two", key="k1"))
    assert isinstance(d.result.value, errors.InvalidFrame) and len(_sends(s)) == 3
    d.addErrback(lambda f: None)


# -- batches


def test_batch_items_get_a_key_each_and_bad_ones_are_named():
    items = batch_items([{"to": "cardio", "message": "a"}, {"to": "All", "message": "b", "key": "mine", "x": 1}])
    assert items[1] == {"to": "All", "message": "b", "key": "mine"}
    assert is_key(items[0]["key"]) and items[0]["key"] != "mine"
    assert batch_items([]) == []
    for bad, says in [([{"to": "x"}], "item 0: an object with 'to' and 'message'"),
                      ([{"to": "x", "message": "m"}, "text"], "item 1"),
                      ([{"to": "x", "message": "m", "key": "a b"}], "item 0: key"),
                      ([{"to": "x", "message": "m"}] * 1001, "at most 1000"),
                      ("not a list", "a list")]:
        with pytest.raises(errors.InvalidFrame, match=re.escape(says)):
            batch_items(bad)


def test_a_batch_is_retried_whole_with_the_same_keys_and_answers_per_item():
    h = Harness(listen=False)
    s = h.join()
    s.refuse[contract.PROC_SEND_BATCH] = [ApplicationError(errors.Unavailable.URI, "store busy")]
    h.store.send("cardio", "known", sender="alice", key="dup")
    d = defer.ensureDeferred(h.engine.send_batch([
        {"to": "cardio", "message": "a"}, {"to": "cardio", "message": "other", "key": "dup"},
        {"to": "cardio", "message": "known", "key": "dup"}]))
    h.clock.pump([0.5] * 4)
    first, second = s.calls_of(contract.PROC_SEND_BATCH)
    assert first == second   # the same items, the same keys
    results = d.result
    assert results[0]["message"] == "a"
    assert results[1] == {"error": errors.InvalidFrame.URI, "detail": "the key was used for another notice"}
    assert results[2]["id"] == h.store.rows[0]["id"]   # stored before: the first envelope
    assert len(h.store.rows) == 2


def test_an_empty_batch_calls_nothing_and_a_short_answer_is_an_error():
    h = Harness(listen=False)
    s = h.join()
    assert defer.ensureDeferred(h.engine.send_batch([])).result == []
    s.answers[contract.PROC_SEND_BATCH] = []
    d = defer.ensureDeferred(h.engine.send_batch([{"to": "cardio", "message": "a"}]))
    assert d.result.value.uri == "deptcast.client.protocol"
    d.addErrback(lambda f: None)


# -- reads


def test_receipts_and_recipients_are_asked_and_retried_like_sends():
    h = Harness(listen=False)
    s = h.join()
    counts = {"id": "0000000000000001", "audience": 3, "seen": 1, "delivered": 1, "pending": 1}
    s.answers[contract.PROC_RECEIPTS] = lambda envelope_id: dict(counts, id=envelope_id)
    s.answers[contract.PROC_RECIPIENTS] = lambda envelope_id, state, after=None, limit=200: {
        "users": [{"dept": "cardio", "user": "bob", "at": 5}], "next": after}
    s.refuse[contract.PROC_RECEIPTS] = [ApplicationError(errors.Unavailable.URI, "busy")]
    d = defer.ensureDeferred(h.engine.receipts("0000000000000001"))
    h.clock.pump([0.5] * 3)
    assert d.result == counts
    page = defer.ensureDeferred(h.engine.recipients("0000000000000001", "seen", after="c1", limit=50)).result
    assert page["next"] == "c1"
    assert s.calls_of(contract.PROC_RECIPIENTS) == [(("0000000000000001", "seen"), {"after": "c1", "limit": 50})]
    defer.ensureDeferred(h.engine.recipients("0000000000000001", "pending"))
    assert s.calls_of(contract.PROC_RECIPIENTS)[-1][1] == {"limit": 200}   # no cursor on the first page
    bad = defer.ensureDeferred(h.engine.recipients("0000000000000001", "read"))
    assert isinstance(bad.result.value, errors.InvalidFrame)
    bad.addErrback(lambda f: None)


def test_a_call_that_never_left_goes_at_once_on_the_next_session():
    """Autobahn raises TransportLost from ``call`` when the transport is gone before the engine
    has heard of it: nothing reached the node, so the next session takes the call at once."""
    h = Harness(listen=False)
    s1 = h.join()
    s1.call = lambda *a, **kw: (_ for _ in ()).throw(TransportLost())
    d = defer.ensureDeferred(h.engine.call(contract.PROC_ROSTER, "cardio"))
    assert not d.called
    h.lose(s1)
    s2 = FakeSession(h.store, node="n2")
    s2.answers[contract.PROC_ROSTER] = {"dept": "cardio", "users": []}
    h.engine.on_join(s2, s2.details)
    h.clock.advance(NEVER_LEFT_WAIT)   # no back-off
    assert d.result == {"dept": "cardio", "users": []}


def test_a_stopped_client_fails_its_waiting_calls_with_the_reason():
    h = Harness(listen=False)
    d = defer.ensureDeferred(h.engine.send("cardio", "waits"))
    h.engine.fail(errors.Revoked("revoked by an administrator"))
    assert isinstance(d.result.value, errors.Revoked)
    d.addErrback(lambda f: None)
    late = defer.ensureDeferred(h.engine.send("cardio", "after"))
    assert isinstance(late.result.value, errors.Revoked)
    late.addErrback(lambda f: None)


def test_transport_lost_at_the_call_is_retried_without_a_wait():
    h = Harness(listen=False)
    s = h.join()
    s.refuse[names.PROC_SEND] = [TransportLost()]
    d = defer.ensureDeferred(h.engine.send("cardio", "hi"))
    h.clock.pump([0.5] * 4)
    assert d.result["message"] == "hi" and len({kw["key"] for _, kw in _sends(s)}) == 1
