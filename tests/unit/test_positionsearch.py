"""Finding a topic's position one history row at a time (``components.core.positionsearch``):
a first start, and where retention left a topic."""

import random

import pytest

from components.core.positionsearch import KeptSearch, StartSearch, fresh_start
from components.core.recovery import MAX_SEQ
from tests.support.envelopes import ALL, DEPT, DM, TOPICS, env


def test_fresh_start_reads_where_each_topic_stands():
    page = [env(DEPT, 4), env(ALL, 9), env(DEPT, 5), env("deptcast.dept.onco", 2), env(DEPT, None)]
    shown, starts, newest, rest = fresh_start(page, TOPICS, replay=2)
    assert starts == {DEPT: 5, ALL: 9}
    assert rest == [DM]
    assert newest == page[4]["id"]
    assert shown == [page[2], page[4]]  # the newest two of this user's topics, oldest first
    assert fresh_start([], TOPICS) == ([], {DEPT: 0, ALL: 0, DM: 0}, None, [])
    assert fresh_start(page, TOPICS)[0] == []


def _search(store, newest_id, live=()):
    """Run a StartSearch against ``store`` (seq -> envelope) like the client does."""
    s = StartSearch(DM, newest_id)
    for e in live:
        s.learn(e)
    calls = 0
    while not s.done:
        asked = s.next_position()
        calls += 1
        s.answer(asked, [store[asked + 1]] if asked + 1 in store else [])
        assert calls < 200
    return s.position, calls


@pytest.mark.parametrize("size", [0, 1, 2, 3, 7, 8, 100, 1023, 5000])
def test_start_search_finds_the_last_seq_before_the_start(size):
    rnd = random.Random(size)
    ids = sorted(rnd.sample(range(1, 10 * size + 20), size))
    store = {n + 1: env(DM, n + 1, msg_id=i) for n, i in enumerate(ids)}
    for cut in sorted({0, min(1, size), size // 2, size}):
        newest = ids[cut - 1] if cut else 0  # everything up to seq `cut` is from before the start
        position, calls = _search(store, f"{newest:016d}")
        assert position == cut, (size, cut)
        assert calls <= 2 * max(1, size).bit_length() + 2


def test_start_search_uses_live_envelopes():
    store = {n: env(DM, n, msg_id=n * 10) for n in range(1, 65)}
    # a live envelope with seq 41 (id 410, after the start at id 400): the answer is 40, found faster
    position, calls = _search(store, f"{400:016d}", live=[store[41]])
    assert position == 40
    assert calls < _search(store, f"{400:016d}")[1]


def _search_pruned(store, floor, newest_id):
    """A StartSearch against ``store`` whose seqs up to ``floor`` were removed by retention
    (positions below ``floor`` are refused as pruned)."""
    s = StartSearch(DM, newest_id)
    calls = 0
    while not s.done:
        asked = s.next_position()
        calls += 1
        if asked < floor:
            s.refused(asked)
        else:
            s.answer(asked, [store[asked + 1]] if asked + 1 in store else [])
        assert calls < 200
    return s.position


@pytest.mark.parametrize("floor", [1, 5, 39, 40, 63])
def test_start_search_moves_past_what_retention_removed(floor):
    store = {n: env(DM, n, msg_id=n * 10) for n in range(floor + 1, 65)}
    # the start (id 400: seq 40) if it is still kept, else where retention stopped
    assert _search_pruned(store, floor, f"{400:016d}") == max(40, floor)


def _kept(floor, position):
    """Run a KeptSearch from ``position`` against a node that removed seqs up to ``floor``."""
    s = KeptSearch(DM, position)
    asked = []
    while not s.done:
        x = s.next_position()
        asked.append(x)
        (s.refused if x < floor else s.accepted)(x)
        assert len(asked) < 200
    return s.position, asked


def test_kept_search_asks_the_position_first_then_doubles_then_halves():
    assert _kept(0, 7) == (7, [7])                      # kept: one question
    assert _kept(3, 0) == (3, [0, 1, 3, 2])
    assert _kept(5, 1) == (5, [1, 2, 4, 8, 6, 5])
    for floor in range(1, 300):
        for position in (0, 1, floor - 1):
            found, asked = _kept(floor, position)
            assert found == floor
            assert len(asked) <= 2 * (floor - position).bit_length() + 2
    with pytest.raises(ValueError, match="refuses every position"):
        _kept(MAX_SEQ + 1, 0)
