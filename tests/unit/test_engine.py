"""The client's engine (``components.client.engine``) on fake sessions and a fake clock: what
reaches the application across gaps, out-of-order arrival via two nodes, duplicates from live
and history, reconnects, and sends that the node refuses."""

import pytest
from autobahn.wamp.exception import ApplicationError, TransportLost
from twisted.internet import defer

from components.client import errors
from components.client.state import StateError
from components.core import names
from tests.support.client import FakeSession, Harness
from tests.support.envelopes import ALL, DEPT, DM


def test_out_of_order_via_two_nodes_is_put_in_order_without_history():
    h = Harness()
    s = h.join()
    one = h.store.append("cardio", "one")
    two = h.store.append("cardio", "two")
    s.event(two)          # relayed by another node, arrives first
    h.clock.advance(0.4)
    assert h.got == []
    s.event(one)
    assert h.messages() == ["one", "two"]
    calls = len(s.history_calls())
    h.clock.advance(5)
    assert len(s.history_calls()) == calls and h.engine.stats.gap_fills == 0


def test_a_lost_event_is_read_from_history_once_the_grace_is_over():
    h = Harness()
    s = h.join()
    h.send("cardio", "one", via=[s])
    h.send("cardio", "two", via=[s], drop_on=[s])   # a link dropped it
    h.send("cardio", "three", via=[s])
    assert h.messages() == ["one"]
    h.clock.advance(0.99)
    assert h.messages() == ["one"]
    h.clock.advance(0.02)
    assert h.messages() == ["one", "two", "three"]
    # one read: it reached the held event ("three"), which continues it
    assert s.history_calls()[-1]["positions"] == {DEPT: 1}
    assert h.engine.stats.gap_fills == 1 and h.engine.stats.delivered_from_history == 1
    # the lost event turning up late changes nothing
    s.event(h.store.rows[1])
    assert h.messages() == ["one", "two", "three"] and h.engine.stats.duplicates >= 1


def test_a_reconnect_to_another_node_catches_up_and_drops_the_duplicates():
    h = Harness()
    s1 = h.join("n1")
    h.send("cardio", "a", via=[s1])
    h.lose(s1)
    h.send("cardio", "b")                 # sent while the client was away
    h.send("All", "c")
    s2 = h.join("n2")
    assert h.engine.stats.reconnects == 1
    assert s2.history_calls()[0]["positions"] == {DEPT: 1, ALL: 0, DM: 0}
    assert h.messages() == ["a", "b", "c"]
    # the same events, live as well (e.g. stored before the history read, published after it)
    for env in h.store.rows[1:]:
        s2.event(env)
    h.send("cardio", "d", via=[s2])
    assert h.messages() == ["a", "b", "c", "d"]
    assert h.engine.stats.duplicates == 2


def test_live_events_during_the_catch_up_are_held_in_order():
    h = Harness()
    s1 = h.join("n1")
    h.lose(s1)
    for i in range(3):
        h.store.append("cardio", f"missed {i}")
    session = FakeSession(h.store, node="n2")
    session.hold[names.PROC_HISTORY] = []
    h.engine.on_join(session, session.details)
    [pending] = session.hold[names.PROC_HISTORY]
    live = h.store.append("cardio", "live during catch-up")
    session.event(live)
    assert h.got == []                    # held: 1-3 are not here yet
    del session.hold[names.PROC_HISTORY]
    pending.callback(h.store.history(names.client_topics("cardio", "alice"), positions={DEPT: 0, ALL: 0, DM: 0}))
    assert h.messages() == ["missed 0", "missed 1", "missed 2", "live during catch-up"]


def test_a_join_cut_short_is_not_caught_up():
    h = Harness()
    seen = []
    h.engine.on_connection(lambda up, details: seen.append(up))
    s1 = FakeSession(h.store)
    s1.hold[names.PROC_HISTORY] = []
    h.engine.on_join(s1, s1.details)
    h.lose(s1)
    s1.hold[names.PROC_HISTORY].pop(0).errback(TransportLost())
    assert not h.engine.ready().called and seen == [False]
    h.join("n2")
    assert h.engine.ready().called and seen == [False, True]


def test_one_client_is_one_user():
    h = Harness()
    h.join(user="alice")
    h.join(user="bob")
    assert isinstance(h.engine.fatal, StateError)


# -- sending


def test_send_returns_the_envelope():
    h = Harness(listen=False)
    s = h.join()
    d = defer.ensureDeferred(h.engine.send("cardio", "hi"))
    assert d.result["message"] == "hi" and s.handlers == {}


@pytest.mark.parametrize("uri, cls", [
    ("deptcast.error.invalid_frame", errors.InvalidFrame), ("deptcast.error.not_authorized", errors.NotAuthorized),
    ("deptcast.error.too_large", errors.TooLarge),
    ("wamp.error.not_authorized", errors.NotAuthorized), ("deptcast.error.something_new", errors.DeptcastError),
])
def test_each_refusal_raises_its_class_at_once(uri, cls):
    h = Harness(listen=False)
    s = h.join()
    s.refuse[names.PROC_SEND] = [ApplicationError(uri, "because")]
    d = defer.ensureDeferred(h.engine.send("cardio", "hi"))
    error = d.result.value
    assert type(error) is cls and error.uri == uri and error.reason == "because"
    assert str(error) == f"{uri}: because"
    assert len([c for c in s.calls if c[0] == names.PROC_SEND]) == 1
    d.addErrback(lambda f: None)


def test_unavailable_is_retried_with_growing_delays():
    h = Harness(listen=False)
    s = h.join()
    s.refuse[names.PROC_SEND] = [ApplicationError(errors.Unavailable.URI, "starting")] * 3
    d = defer.ensureDeferred(h.engine.send("cardio", "hi"))
    assert not d.called
    h.clock.advance(0.5)
    h.clock.advance(1.0)
    h.clock.advance(2.0)
    assert d.result["message"] == "hi"
    sends = [kw for p, _, kw in s.calls if p == names.PROC_SEND]
    assert len(sends) == 4 and len({kw["key"] for kw in sends}) == 1   # every retry with the notice's key


def test_unavailable_past_the_timeout_is_raised():
    h = Harness(listen=False)
    s = h.join()
    s.refuse[names.PROC_SEND] = [ApplicationError(errors.Unavailable.URI, "starting")] * 100
    d = defer.ensureDeferred(h.engine.send("cardio", "hi", timeout=3))
    h.clock.pump([0.5] * 20)
    assert isinstance(d.result.value, errors.Unavailable)
    d.addErrback(lambda f: None)


def test_a_send_waits_for_a_session():
    h = Harness(listen=False)
    d = defer.ensureDeferred(h.engine.send("cardio", "waits"))
    assert not d.called
    h.join()
    assert d.result["message"] == "waits"


def test_a_send_lost_in_flight_is_sent_again_with_its_key_and_stored_once():
    """The first attempt reached the node and was stored, but its answer was lost with the
    connection: the retry on the next session carries the same key and gets the first envelope."""
    h = Harness(listen=False)
    s1 = h.join()
    s1.hold[names.PROC_SEND] = []
    d = defer.ensureDeferred(h.engine.send("cardio", "in flight"))
    [(args, kwargs)] = s1.calls_of(names.PROC_SEND)
    stored = h.store.send(*args, sender="alice", key=kwargs["key"])   # the node took it...
    h.lose(s1)
    s1.hold[names.PROC_SEND][0].errback(TransportLost())              # ...and the answer was lost
    assert not d.called
    h.clock.advance(1)
    s2 = h.join("n2")
    h.clock.advance(1)
    [(args2, kwargs2)] = s2.calls_of(names.PROC_SEND)
    assert kwargs2 == kwargs and args2 == ("cardio", "in flight")
    assert d.result == stored and len(h.store.rows) == 1
    assert h.engine.stats.send_retries == 1


def test_a_send_with_no_session_in_time_is_not_connected():
    h = Harness(listen=False)
    d = defer.ensureDeferred(h.engine.send("cardio", "nobody there", timeout=2))
    h.clock.advance(2.1)
    assert isinstance(d.result.value, errors.NotConnected) and isinstance(d.result.value, errors.Unavailable)
    d.addErrback(lambda f: None)


def test_a_send_whose_outcome_is_unknown_when_time_is_up_says_so_with_its_key():
    h = Harness(listen=False)
    s = h.join()
    s.hold[names.PROC_SEND] = []
    d = defer.ensureDeferred(h.engine.send("cardio", "no answer", timeout=5, key="shift-42"))
    h.clock.advance(5)
    error = d.result.value
    assert isinstance(error, errors.ConnectionLost) and error.key == "shift-42"
    assert "no answer" in error.reason
    d.addErrback(lambda f: None)
    # lost, and no session comes back in time: still "unknown", not "never sent"
    s.hold[names.PROC_SEND] = []
    d2 = defer.ensureDeferred(h.engine.send("cardio", "lost", timeout=5))
    h.lose(s)
    s.hold[names.PROC_SEND][0].errback(TransportLost())
    h.clock.pump([0.5] * 12)
    assert type(d2.result.value) is errors.ConnectionLost and d2.result.value.key
    d2.addErrback(lambda f: None)
