"""The recovery rules (``components.core.recovery``): exactly once, in per-topic order, from
live events and history in any order."""

import random

import pytest

from components.core.recovery import Recovery, envelope_key
from tests.support.envelopes import ALL, DEPT, DM, TOPICS, env, seqs


def started(**positions):
    return Recovery(TOPICS, {DEPT: 0, ALL: 0, DM: 0, **positions})


def test_in_order_envelopes_are_delivered_at_once_and_move_the_position():
    r = started()
    assert seqs(r.offer(env(DEPT, 1), 0)) == [1]
    assert seqs(r.offer(env(ALL, 1), 0)) == [1]
    assert seqs(r.offer(env(DEPT, 2), 0)) == [2]
    assert r.positions() == {DEPT: 2, ALL: 1, DM: 0}
    assert r.gaps() == {} and r.next_due() is None


def test_an_envelope_out_of_order_waits_for_the_missing_one_then_both_go_in_order():
    """Two nodes relay a topic's events: 3 may overtake 2."""
    r = started(**{DEPT: 1})
    three = env(DEPT, 3)
    assert r.offer(three, 10.0) == []
    assert r.gaps() == {DEPT: [(2, 2)]}
    assert r.due(10.5) == {}  # within the grace: no history yet
    assert r.next_due() == 11.0
    assert seqs(r.offer(env(DEPT, 2), 10.3)) == [2, 3]
    assert r.gaps() == {} and r.next_due() is None and r.positions()[DEPT] == 3


def test_a_gap_that_stays_open_asks_history_from_the_position():
    r = started(**{DEPT: 4, ALL: 9})
    r.offer(env(DEPT, 7), 5.0)
    r.offer(env(ALL, 10), 5.0)  # in order: no gap on All
    assert r.due(5.99) == {}
    assert r.due(6.0) == {DEPT: 4}
    assert r.gaps() == {DEPT: [(5, 6)]}


def test_duplicates_from_live_and_history_are_dropped():
    r = started()
    one, two, three, four = (env(DEPT, n) for n in (1, 2, 3, 4))
    assert seqs(r.offer(one, 0)) == [1]
    assert r.offer(dict(one), 0) == []           # the same event again
    assert r.offer(four, 0) == []                # held
    assert r.offer(dict(four), 0) == []          # held already
    # history answers 2, 3, 4 while 4 is held: each delivered once, in order
    assert seqs(r.offer_page([two, three, dict(four)], 0.5)) == [2, 3, 4]
    assert r.offer(dict(two), 1) == [] and r.offer(dict(four), 1) == []
    assert r.duplicates == 5


def test_an_envelope_without_seq_is_delivered_once_by_id():
    r = started()
    old = env(DEPT, None)
    assert r.offer(old, 0) == [old]
    assert r.offer(dict(old), 0) == []
    assert r.positions()[DEPT] == 0


@pytest.mark.parametrize("bad", [
    None, "text", [], {}, {"id": "1", "scope": "dept"},  # no target
    {"id": "x1", "scope": "dept", "target": "cardio", "seq": 1},  # id not a number
    {"id": "1", "scope": "dept", "target": "car_dio_x", "seq": 1},  # malformed target
    {"id": "1", "scope": "dept", "target": "cardio", "seq": 0},
    {"id": "1", "scope": "dept", "target": "cardio", "seq": True},
    {"id": "1", "scope": "dept", "target": "cardio", "seq": "2"},
    {"id": "1", "scope": "dept", "target": "onco", "seq": 1},  # not one of this user's topics
])
def test_what_is_not_an_envelope_of_these_topics_is_ignored(bad):
    r = started()
    assert r.offer(bad, 0) == []
    assert r.ignored == 1 and r.held() == 0


def test_envelope_key():
    assert envelope_key(env(DM, 3)) == (DM, 3)
    assert envelope_key(env(ALL, None)) == (ALL, None)


def test_a_topic_without_position_holds_until_it_starts():
    r = Recovery(TOPICS, {ALL: 5})
    assert r.unknown() == [DEPT, DM]
    assert r.offer(env(DEPT, 8), 0) == [] and r.offer(env(DEPT, 10), 0) == []
    assert r.offer(env(DEPT, 6), 0) == []
    assert r.next_due() is None  # no gap timer before the start is known
    # history says the topic stood at 7 when the client started: 6 is from before, 8 on are new
    assert seqs(r.start_at(DEPT, 7, 3.0)) == [8]
    assert r.gaps() == {DEPT: [(9, 9)]} and r.next_due() == 4.0
    assert r.start_at(DEPT, 1, 3.0) == []  # a start is said once


def test_history_that_skips_seqs_means_they_are_not_stored():
    """History answers everything past the position: when it starts further on, or skips a
    seq, the client stops waiting (instead of asking again and again)."""
    r = started(**{DEPT: 3})
    six, seven, all_one, nine = env(DEPT, 6), env(DEPT, 7), env(ALL, 1), env(DEPT, 9)
    assert r.offer(seven, 0) == []
    mark = r.begin_fill()
    assert seqs(r.offer_page([six, all_one], 1.0)) == [6, 1]
    assert r.skipped == 2 and r.positions() == {DEPT: 6, ALL: 1, DM: 0}
    # the held event waits for the end of the read, then follows
    assert seqs(r.end_fill(mark, None, 1.0)) == [7]
    assert seqs(r.offer_page([nine], 2.0)) == [9] and r.skipped == 3


def test_history_delivers_at_once_and_held_events_wait_for_the_end_of_the_read():
    r = started(**{DEPT: 4})
    five, six, seven, eight = (env(DEPT, n) for n in (5, 6, 7, 8))
    r.offer(seven, 0)
    mark = r.begin_fill()
    r.offer(eight, 0.5)                       # arrives during the read
    assert seqs(r.offer_page([five, six, dict(seven)], 1.0)) == [5, 6, 7]
    assert r.positions()[DEPT] == 7           # the next page asks from 7
    assert seqs(r.end_fill(mark, [DEPT], 1.0)) == [8]
    assert r.duplicates == 1


def test_during_a_join_live_events_are_held_and_released_in_id_order():
    r = started(**{DEPT: 4, ALL: 8, DM: 1})
    d5, u2, a9 = env(DEPT, 5), env(DM, 2), env(ALL, 9)
    r.begin_join()
    mark = r.begin_fill()
    assert r.offer(d5, 0) == [] and r.offer(u2, 0) == [] and r.offer(a9, 0) == []
    assert r.next_due() is None               # the join's read covers them: no gap timer
    assert [e["id"] for e in r.end_fill(mark, None, 1.0, join=True)] == [d5["id"], u2["id"], a9["id"]]
    assert seqs(r.offer(env(DEPT, 6), 2.0)) == [6]  # after the join: at once


def test_a_lost_connection_drops_what_is_held():
    r = started(**{DEPT: 4})
    r.offer(env(DEPT, 7), 0)
    r.drop_held()
    assert r.held() == 0 and r.next_due() is None and r.positions()[DEPT] == 4


def test_a_read_to_the_end_releases_what_was_held_before_it_began():
    r = started(**{DEPT: 1})
    r.offer(env(DEPT, 4), 0)           # 2 and 3 missing
    mark = r.begin_fill()
    r.offer(env(ALL, 3), 0.5)          # arrives during the read: its gap may be new and real
    assert seqs(r.end_fill(mark, None, 2.0)) == [4]
    assert r.skipped == 2
    assert r.gaps() == {ALL: [(1, 2)]} and r.next_due() == 3.0


def test_lowest_held_is_the_first_live_event_of_each_started_topic():
    r = Recovery(TOPICS, {DEPT: 4, ALL: 8})    # DM's start is not known
    r.begin_join()
    for e in (env(DEPT, 9), env(DEPT, 6), env(DM, 3)):
        r.offer(e, 0)
    assert r.lowest_held(TOPICS) == {DEPT: 6}
    assert r.lowest_held([ALL]) == {}


def test_a_read_that_ended_at_a_held_event_does_not_skip_the_hole_above_it():
    r = started(**{DEPT: 4})
    r.offer(env(DEPT, 6), 0)
    r.offer(env(DEPT, 8), 0)                 # 5 and 7 missing, both held before the read
    mark = r.begin_fill()
    assert seqs(r.offer_page([env(DEPT, 5)], 1.0)) == [5]
    # the read stopped at 6 (position + 1 reaches it): it did not read past 7, so 7 is not given up
    assert seqs(r.end_fill(mark, [DEPT], 1.0, reached=[DEPT])) == [6]
    assert r.skipped == 0 and r.gaps() == {DEPT: [(7, 7)]} and r.next_due() == 2.0


def test_a_read_of_some_topics_leaves_the_others_alone():
    r = started()
    r.offer(env(DEPT, 3), 0)
    r.offer(env(ALL, 3), 0)
    mark = r.begin_fill()
    assert seqs(r.end_fill(mark, [ALL], 1.0)) == [3]
    assert r.gaps() == {DEPT: [(1, 2)]}


def test_two_nodes_interleaved_deliver_every_envelope_once_in_order():
    """Envelopes of three topics come via two nodes, shuffled within a window, each some of
    the time twice (live and history); what the application gets is each once, in order."""
    rnd = random.Random(7)
    stream = [env(t, n) for n in range(1, 201) for t in TOPICS]
    arrivals = []
    for e in stream:
        arrivals.append(e)
        if rnd.random() < 0.3:
            arrivals.append(dict(e))
    # shuffle within windows of 8: a relayed event overtakes a few others, never many
    shuffled = []
    for i in range(0, len(arrivals), 8):
        chunk = arrivals[i:i + 8]
        rnd.shuffle(chunk)
        shuffled += chunk
    r = started()
    got = []
    for i, e in enumerate(shuffled):
        got += r.offer(e, i * 0.001)
    for t in TOPICS:  # per-topic order (across topics, arrival order is kept)
        assert [e["seq"] for e in got if envelope_key(e)[0] == t] == list(range(1, 201))
    assert len(got) == len(stream) and r.held() == 0 and r.gaps() == {}


def test_offer_newest_delivers_what_is_new_for_the_topics_read_and_says_which_it_shows():
    r = started(**{DEPT: 2, ALL: 5})
    page = [env(ALL, 5), env(DEPT, 8), env(ALL, 6), env(DM, 1), env(DEPT, 9)]
    out, shown = r.offer_newest(page, [DEPT, ALL], 0.0)
    assert [(envelope_key(e)[0], e["seq"]) for e in out] == [(DEPT, 8), (ALL, 6), (DEPT, 9)]
    assert shown == [DEPT, ALL]            # in the recovery's topic order
    assert r.positions() == {DEPT: 9, ALL: 6, DM: 0}, "the DM topic was not read: left alone"
    assert r.skipped == 5 and r.duplicates == 1


def test_skip_to_moves_a_position_past_what_was_removed():
    r = started(**{DM: 1})
    r.offer(env(DM, 7), 0.0)                # a live event behind a gap
    assert r.skip_to(DM, 5, 1.0) == []      # a hole left at 6
    assert r.positions()[DM] == 5 and r.skipped == 4 and r.gaps() == {DM: [(6, 6)]}
    assert r.skip_to(DM, 3, 1.0) == []      # never backwards
    assert [e["seq"] for e in r.skip_to(DM, 6, 2.0)] == [7]
    assert r.positions()[DM] == 7 and r.gaps() == {}
    # during a join, what is held waits for the join's read
    r.begin_join()
    r.offer(env(DM, 12), 3.0)
    assert r.skip_to(DM, 11, 3.0) == [] and r.held() == 1
    assert [e["seq"] for e in r.end_fill(r.begin_fill(), join=True)] == [12]
