"""Catching up from history (``components.client.catchup``), through an engine on fake sessions
and a fake clock: a first start, reads paged to the end, a node that is starting, retention
(``deptcast.error.pruned``) and the history rate limit."""

from typing import List

import pytest
from autobahn.wamp.exception import ApplicationError

from components.client import errors
from components.client.state import FileState
from components.core import names
from components.core.recovery import HISTORY_PAGE, START_PAGE
from tests.support.client import FakeSession, FakeStore, Harness
from tests.support.envelopes import ALL, DEPT, DM


def test_a_first_start_begins_now_and_delivers_what_comes_after():
    h = Harness()
    for i in range(3):
        h.store.append("cardio", f"old {i}")
    h.store.append("All", "old all")
    s = h.join()
    ready = h.engine.ready()
    assert ready.called and h.got == []
    assert h.engine.recovery.positions() == {DEPT: 3, ALL: 1, DM: 0}
    assert set(s.handlers) == {DEPT, ALL, DM}
    # subscribed before reading history: one latest page, and one probe for the empty DM topic
    assert s.history_calls()[0] == {"latest": True, "limit": START_PAGE}
    h.send("cardio", "new", via=[s])
    h.send("cardio_alice", "direct", via=[s])
    h.send("cardio_bob", "not mine", via=[s])
    assert h.messages() == ["new", "direct"]


def test_history_n_shows_the_newest_first():
    h = Harness(history=2)
    for i in range(5):
        h.store.append("cardio", f"old {i}")
    s = h.join()
    h.send("cardio", "new", via=[s])
    assert h.messages() == ["old 3", "old 4", "new"]
    assert h.engine.stats.delivered_from_history == 2


def test_a_first_start_cut_short_goes_on_where_it_was_and_shows_nothing_twice():
    h = Harness(history=2)
    for i in range(3):
        h.store.append("cardio", f"old {i}")
    for i in range(START_PAGE + 1):
        h.store.append("All", f"busy {i}")   # the DM topic is not on the first page: it is searched
    s1 = FakeSession(h.store)
    s1.hold[names.PROC_HISTORY] = []
    h.engine.on_join(s1, s1.details)
    s1.hold[names.PROC_HISTORY].pop(0).callback(
        h.store.history(names.client_topics("cardio", "alice"), latest=True, limit=START_PAGE))
    assert h.messages() == ["busy 99", "busy 100"]
    assert "positions" in s1.history_calls()[-1]  # searching where the DM topic stands...
    h.lose(s1)                                    # ...when the connection is lost
    h.join("n2")
    assert h.messages() == ["busy 99", "busy 100"] and not h.engine.recovery.unknown()


def test_an_unknown_topic_start_is_searched_when_the_first_page_does_not_show_it():
    h = Harness()
    for i in range(3):
        h.store.append("cardio_alice", f"old dm {i}")
    for i in range(START_PAGE + 5):
        h.store.append("All", f"busy {i}")
    s = h.join()
    assert h.engine.recovery.positions() == {DEPT: 0, ALL: START_PAGE + 5, DM: 3}
    h.send("cardio_alice", "new dm", via=[s])
    assert h.messages() == ["new dm"]


def test_history_unavailable_is_retried():
    h = Harness()
    s1 = h.join()
    h.lose(s1)
    h.store.append("cardio", "missed")
    s2 = FakeSession(h.store, node="n2")
    s2.refuse[names.PROC_HISTORY] = [ApplicationError(errors.Unavailable.URI, "starting")]
    h.engine.on_join(s2, s2.details)
    assert h.got == []
    h.clock.advance(2)
    assert h.messages() == ["missed"]


def test_pages_are_read_until_an_empty_answer_not_until_a_short_one():
    """The node bounds pages by bytes too: a page shorter than the limit asked is not the end."""
    class ShortPages(FakeStore):
        def history(self, topics, **kwargs):
            rows = super().history(topics, **kwargs)
            return rows[:2] if "positions" in kwargs else rows
    store = ShortPages()
    h = Harness(store)
    s1 = h.join()
    h.lose(s1)
    for i in range(5):
        store.append("cardio", f"missed {i}")
    s2 = h.join("n2")
    assert h.messages() == [f"missed {i}" for i in range(5)]
    assert [c["positions"][DEPT] for c in s2.history_calls()] == [0, 2, 4, 5]   # 2 + 2 + 1, then empty


@pytest.mark.parametrize("page", [2, HISTORY_PAGE])
def test_a_busy_department_ends_the_read_at_the_events_held_meanwhile(page):
    """Every history answer brings one more notice, published live while the call is under way:
    an empty answer never comes for the department, yet the join's read ends once history
    reaches the events held since subscribing, and everything is delivered once, in order."""
    h = Harness(page=page)
    s1 = h.join()
    h.lose(s1)
    for i in range(5):
        h.store.append("cardio", f"missed {i}")
    s2 = FakeSession(h.store, node="n2")
    live: List[str] = []

    def busy(**kwargs):
        if len(live) < 200:   # bounds the read that never ends (without the rule, it would not)
            live.append(f"live {len(live)}")
            h.send("cardio", live[-1], via=[s2])
        return h.store.history(names.client_topics("cardio", "alice"), **kwargs)
    s2.answers[names.PROC_HISTORY] = busy
    h.engine.on_join(s2, s2.details)
    calls = s2.history_calls()
    assert h.engine.ready().called
    assert len(calls) <= 2 + 5 // page, calls
    assert DEPT not in calls[-1]["positions"]           # the department is not asked again...
    assert set(calls[-1]["positions"]) == {ALL, DM}     # ...the other topics read until empty
    assert h.messages() == [f"missed {i}" for i in range(5)] + live
    h.send("cardio", "after", via=[s2])
    assert h.messages()[-1] == "after" and h.engine.recovery.held() == 0


# -- retention (deptcast.error.pruned) and the history rate limit


@pytest.fixture
def log_lines():
    """What is logged (every logger of the process) during the test, formatted."""
    from twisted.logger import formatEvent, globalLogPublisher
    lines: List[str] = []

    def observe(event) -> None:
        lines.append(formatEvent(event))
    globalLogPublisher.addObserver(observe)
    yield lines
    globalLogPublisher.removeObserver(observe)


def test_a_saved_position_older_than_retention_goes_on_from_the_newest_page(tmp_path, log_lines):
    store = FakeStore()
    path = tmp_path / "alice.state"
    first = FileState(path)
    h1 = Harness(store, state=first)
    s = h1.join()
    h1.send("cardio", "seen", via=[s])
    h1.engine.commit(h1.got[0])
    h1.lose(s)
    first.unlock()
    for i in range(10):
        store.append("cardio", f"while away {i}")
    store.prune(DEPT, 3)                                  # retention keeps the newest 3
    h2 = Harness(store, state=FileState(path))
    s2 = h2.join()
    assert h2.messages() == ["while away 7", "while away 8", "while away 9"]
    assert h2.engine.ready().called and h2.engine.fatal is None
    assert [list(c) for c in s2.history_calls()] == [["positions", "limit"], ["latest", "limit"],
                                                      ["positions", "limit"]]
    assert h2.engine.stats.pruned == 1 and h2.engine.stats.reconnects == 0
    [line] = [ln for ln in log_lines if "retention" in ln]
    assert line.startswith("deptcast client: messages after this client's position were removed by the node's "
                           "retention (removed by retention on deptcast.dept.cardio)")
    # it goes on: the next message is delivered once, and the position is saved
    h2.send("cardio", "after", via=[s2])
    assert h2.messages()[-1] == "after" and len(h2.got) == 4


def test_a_topic_the_newest_page_misses_is_read_from_the_first_message_kept():
    """A first start in the browser's way (the newest page, quiet topics from their start):
    the DM topic, older than that page, lost its first messages to retention."""
    store = FakeStore()
    for i in range(6):
        store.append("cardio_alice", f"dm {i}")
    store.prune(DM, 4)
    for i in range(START_PAGE + 5):
        store.append("cardio", f"busy {i}")
    h = Harness(store, first_start="page")
    s = h.join()
    assert h.messages()[-4:] == ["dm 2", "dm 3", "dm 4", "dm 5"]
    assert h.messages()[0] == "busy 5" and len(h.got) == START_PAGE + 4
    assert h.engine.recovery.positions() == {DEPT: START_PAGE + 5, ALL: 0, DM: 6}
    probes = [c["positions"] for c in s.history_calls() if c.get("limit") == 1]
    assert probes == [{ALL: 0}, {DM: 0}, {DM: 1}, {DM: 3}, {DM: 2}]
    assert h.engine.stats.pruned == 1 and h.engine.stats.skipped == 2


def test_a_first_start_now_searches_past_what_retention_removed():
    """The default first start: a topic the newest page does not show is searched for where it
    stands; probes below what retention removed are refused, and the search moves past them."""
    store = FakeStore()
    for i in range(40):
        store.append("cardio_alice", f"dm {i}")
    store.prune(DM, 5)
    for i in range(START_PAGE + 5):
        store.append("All", f"busy {i}")
    h = Harness(store)
    s = h.join()
    assert h.engine.fatal is None and h.engine.ready().called
    assert h.engine.recovery.positions() == {DEPT: 0, ALL: START_PAGE + 5, DM: 40}
    h.send("cardio_alice", "new dm", via=[s])
    assert h.messages() == ["new dm"]
    assert h.engine.stats.pruned == 0, "nothing the client wanted was removed"


def test_retention_during_a_gap_goes_on_from_the_newest_page_for_that_topic():
    h = Harness()
    s = h.join()
    h.send("cardio", "one", via=[s])
    for i in range(6):
        h.send("cardio", f"lost {i}", via=[s], drop_on=[s])   # a link dropped them...
    h.send("cardio", "later", via=[s])                          # (the gap shows)
    h.store.prune(DEPT, 3)                                      # ...and retention removed most
    h.send("All", "to all", via=[s])
    assert h.messages() == ["one", "to all"]
    h.clock.advance(1.5)
    assert h.messages() == ["one", "to all", "lost 4", "lost 5", "later"]
    # the newest page reached the held event ("later"): the read of the topic is complete
    assert s.history_calls()[-2:] == [{"positions": {DEPT: 1}, "limit": HISTORY_PAGE},
                                      {"latest": True, "limit": HISTORY_PAGE}]
    assert h.engine.stats.pruned == 1 and h.engine.recovery.gaps() == {} and h.engine.stats.duplicates == 1


def test_a_node_that_refuses_every_position_as_pruned_stops_the_client():
    h = Harness()
    s1 = h.join()
    h.lose(s1)
    h.store.append("cardio", "m")
    s2 = FakeSession(h.store, node="n2")
    s2.refuse[names.PROC_HISTORY] = [ApplicationError(errors.Pruned.URI, "everything is gone")] * 1000
    h.engine.on_join(s2, s2.details)
    assert isinstance(h.engine.fatal, errors.Pruned)
    assert len(s2.history_calls()) < 1000


def test_rate_limited_history_waits_retry_after_and_goes_on_without_reconnecting():
    h = Harness()
    s1 = h.join()
    h.lose(s1)
    for i in range(3):
        h.store.append("cardio", f"missed {i}")
    s2 = FakeSession(h.store, node="n2")
    s2.refuse[names.PROC_HISTORY] = [ApplicationError(errors.RateLimited.URI, "slow down", retry_after=2.5)]
    h.engine.on_join(s2, s2.details)
    assert h.got == [] and len(s2.history_calls()) == 1
    h.clock.advance(2.4)
    assert len(s2.history_calls()) == 1, "not before retry_after"
    h.clock.advance(0.1)
    assert h.messages() == ["missed 0", "missed 1", "missed 2"]
    assert s2.history_calls()[0] == s2.history_calls()[1], "the same request again"
    # without retry_after: 1 s
    h.lose(s2)
    h.store.append("cardio", "missed 3")
    s3 = FakeSession(h.store, node="n3")
    s3.refuse[names.PROC_HISTORY] = [ApplicationError(errors.RateLimited.URI, "slow down")] * 2
    h.engine.on_join(s3, s3.details)
    h.clock.advance(0.99)
    assert len(s3.history_calls()) == 1
    h.clock.advance(0.01)
    assert len(s3.history_calls()) == 2
    h.clock.advance(1)
    assert h.messages()[-1] == "missed 3" and h.engine.ready().called
    assert h.engine.stats.rate_limited == 3 and h.engine.fatal is None
