"""Handing envelopes over and keeping the position (``components.client.delivery``): a saved
position resumed and kept, one of another user, one that cannot be written."""

import pytest

from components.client.delivery import Delivery
from components.client.state import FileState, StateError
from components.client.stats import Stats
from components.core.recovery import START_PAGE
from tests.support.client import FakeStore, Harness
from tests.support.envelopes import ALL, DEPT, TOPICS, env


def test_the_saved_position_is_resumed_and_kept(tmp_path):
    store = FakeStore()
    path = tmp_path / "alice.state"
    first = FileState(path)
    h1 = Harness(store, state=first)
    s = h1.join()
    h1.send("cardio", "one", via=[s])
    h1.send("cardio", "two", via=[s])
    h1.engine.commit(h1.got[0])          # the application finished with "one" only
    assert FileState(tmp_path / "other").load() is None
    assert path.read_text().count('"deptcast.dept.cardio": 1') == 1
    first.unlock()
    # the process is gone; a new one resumes: "two" again (never handled), and what came since
    store.append("cardio", "three")
    h2 = Harness(store, state=FileState(path))
    s2 = h2.join()
    assert {"latest": True, "limit": START_PAGE} not in s2.history_calls()
    assert h2.messages() == ["two", "three"]
    # saved by renaming a whole file over the old one: no temporary file is left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alice.state", "alice.state.lock", "other.lock"]


def test_a_state_file_of_another_user_stops_the_client(tmp_path):
    path = tmp_path / "s"
    FileState(path).save("cardio_bob", {DEPT: 3})
    h = Harness(state=FileState(path))
    h.join()
    assert isinstance(h.engine.fatal, StateError) and "cardio_bob" in str(h.engine.fatal)
    failure = h.engine.ready()
    assert isinstance(failure.result.value, StateError)
    failure.addErrback(lambda f: None)


def test_a_position_that_cannot_be_saved_stops_the_client(tmp_path):
    import shutil
    folder = tmp_path / "gone"
    folder.mkdir()
    h = Harness(state=FileState(folder / "s"))
    s = h.join()
    h.send("cardio", "one", via=[s])
    shutil.rmtree(folder)
    with pytest.raises(StateError, match="cannot write it"):
        h.engine.commit(h.got[0])
    assert isinstance(h.engine.fatal, StateError)


class MemoryState:
    """A position store in memory."""

    def __init__(self, saved=None) -> None:
        self.saved = saved

    def load(self):
        return self.saved

    def save(self, user, positions) -> None:
        self.saved = (user, dict(positions))


def test_each_envelope_is_counted_by_where_it_came_from_first():
    got = []
    delivery = Delivery(got.append, Stats(), None, fail=got.append)
    live, read = env(DEPT, 1), env(DEPT, 2)
    delivery.arrived_live(live)
    delivery.arrived_live(dict(live))          # the router delivered it twice
    delivery.arrived_from_history([read, dict(live)])
    delivery.emit([live, read])
    stats = delivery.stats
    assert got == [live, read] and stats.live == 2 and stats.live_repeats == 1 and stats.from_history == 2
    assert stats.delivered == 2 and stats.delivered_from_history == 1 and list(stats.history_ids) == [read["id"]]
    delivery.arrived_live(dict(read))  # history brought it first; it still came live
    assert list(stats.live_ids) == [live["id"], live["id"], read["id"]]


def test_only_a_higher_seq_moves_the_saved_position():
    state = MemoryState(("cardio_alice", {DEPT: 4, "deptcast.dept.onco": 9}))
    delivery = Delivery(lambda e: None, Stats(), state, fail=lambda e: None)
    assert delivery.resume("cardio_alice", TOPICS) == {DEPT: 4}      # another department's topic is dropped
    delivery.commit(env(DEPT, 3))
    delivery.commit(env(DEPT, None))                                  # no seq: not a position
    assert state.saved == ("cardio_alice", {DEPT: 4, "deptcast.dept.onco": 9}), "nothing saved"
    delivery.commit(env(DEPT, 5))
    delivery.keep({DEPT: 1, ALL: 7})                                  # a first start of the other topics
    assert state.saved == ("cardio_alice", {DEPT: 5, ALL: 7})
    with pytest.raises(StateError, match="cardio_bob's"):
        Delivery(lambda e: None, Stats(), state, fail=lambda e: None).resume("cardio_bob", TOPICS)
