"""Unit tests of retention: the rules (components.core.retention), the settings, and the
background pruner (components.service.retention) on a Clock with a recording store."""

import pytest
from twisted.internet import defer, task

from components.core.errors import PRUNED
from components.core.history import HistoryRequest
from components.core.retention import (DAY_MS, Floor, age_cutoff, count_cut, pruned_past, pruned_refusal)
from components.core.settings import ConfigError, load_settings
from components.service.retention import Pruner, retention_text
from components.service.slot import Slot
from components.store.threaded import StoreUnavailable

TOPICS = ("deptcast.dept.hr", "deptcast.all", "deptcast.user.hr_alice")
SECRET = "k" * 40


def test_age_cutoff_and_count_cut():
    assert age_cutoff(10 * DAY_MS, 2) == 8 * DAY_MS
    assert age_cutoff(10 * DAY_MS, 0.5) == int(9.5 * DAY_MS)
    assert count_cut(top_seq=100, floor_seq=0, keep=30) == 70
    assert count_cut(top_seq=100, floor_seq=70, keep=30) is None
    assert count_cut(top_seq=20, floor_seq=0, keep=30) is None


def test_positions_below_a_floor_are_pruned_and_at_or_above_it_are_not():
    floors = {"deptcast.dept.hr": Floor(seq=5, id=50)}
    assert pruned_past(HistoryRequest(TOPICS, positions={"deptcast.dept.hr": 4}), floors) == {"deptcast.dept.hr": 6}
    assert pruned_past(HistoryRequest(TOPICS, positions={"deptcast.dept.hr": 5}), floors) == {}
    assert pruned_past(HistoryRequest(TOPICS, positions={"deptcast.all": 0}), floors) == {}


def test_after_an_id_below_a_floor_is_pruned_but_from_the_start_or_latest_is_not():
    floors = {"deptcast.all": Floor(seq=7, id=70)}
    assert pruned_past(HistoryRequest(TOPICS, after=69), floors) == {"deptcast.all": 8}
    assert pruned_past(HistoryRequest(TOPICS, after=70), floors) == {}
    assert pruned_past(HistoryRequest(TOPICS, after=0), floors) == {}
    assert pruned_past(HistoryRequest(TOPICS, after=10, latest=True), floors) == {}


def test_the_refusal_says_what_to_do():
    refusal = pruned_refusal({"deptcast.dept.hr": 6})
    assert refusal.uri == PRUNED == "deptcast.error.pruned"
    assert "deptcast.dept.hr (kept from seq 6)" in refusal.detail and "latest=true" in refusal.detail
    assert refusal.retry_after is None  # not a retry: the same request fails the same way


def test_settings(tmp_path):
    s = load_settings(tmp_path, {"DEPTCAST_JWT_SECRET": SECRET})
    assert (s.retention_days, s.retention_messages) == (0.0, 0) and retention_text(s) == "off"
    s = load_settings(tmp_path, {"DEPTCAST_JWT_SECRET": SECRET, "DEPTCAST_RETENTION_DAYS": "30",
                                 "DEPTCAST_RETENTION_MESSAGES": "10000"})
    assert (s.retention_days, s.retention_messages) == (30.0, 10000)
    assert retention_text(s) == "older than 30 days and beyond the newest 10000 per topic"
    for bad in ({"DEPTCAST_RETENTION_DAYS": "-1"}, {"DEPTCAST_RETENTION_MESSAGES": "many"}):
        with pytest.raises(ConfigError, match=list(bad)[0]):
            load_settings(tmp_path, {"DEPTCAST_JWT_SECRET": SECRET, **bad})


class RecordingStore:
    """The pruner's view of a ThreadedStore: old rows by count, topics over the limit."""

    def __init__(self, old: int, topics=(), fail: bool = False) -> None:
        self.old = old
        self.topics = dict(topics)     # topic -> rows beyond the limit
        self.calls = []
        self.fail = fail

    def prune_older(self, cutoff, batch):
        self.calls.append(("age", cutoff, batch))
        if self.fail:
            return defer.fail(StoreUnavailable("down"))
        n = min(batch, self.old)
        self.old -= n
        return defer.succeed(n)

    def topics_over(self, keep):
        return defer.succeed([(t, 99) for t, n in sorted(self.topics.items()) if n])

    def prune_topic(self, topic, upto, batch):
        self.calls.append(("count", topic, batch))
        n = min(batch, self.topics[topic])
        self.topics[topic] -= n
        return defer.succeed(n)


class Service:
    store_ready = True

    def __init__(self, store):
        self.store = store


def pruner(tmp_path, store, **env):
    clock = task.Clock()
    settings = load_settings(tmp_path, {"DEPTCAST_JWT_SECRET": SECRET, **env})
    slot = Slot(clock, "service")
    slot.set(Service(store))
    return Pruner(settings, slot, clock, interval=60, batch=10, pause=0.5, now=lambda: 100 * 86400.0), clock


def test_the_pruner_removes_in_batches_with_pauses_between_them(tmp_path):
    store = RecordingStore(old=25, topics={"deptcast.dept.hr": 12})
    p, clock = pruner(tmp_path, store, DEPTCAST_RETENTION_DAYS="30", DEPTCAST_RETENTION_MESSAGES="5")
    d = p.run_once()
    assert [c[0] for c in store.calls] == ["age"]      # one batch, then a pause
    clock.advance(0.5)
    clock.advance(0.5)
    assert [c[0] for c in store.calls] == ["age", "age", "age", "count"]
    assert store.calls[0][1] == age_cutoff(100 * DAY_MS, 30)
    clock.advance(0.5)
    assert [c[0] for c in store.calls][-2:] == ["count", "count"]
    assert d.called and d.result == 25 + 12


def test_the_pruner_runs_every_interval_and_only_when_enabled(tmp_path):
    store = RecordingStore(old=0)
    p, clock = pruner(tmp_path, store, DEPTCAST_RETENTION_MESSAGES="5")
    p.start()
    assert p.rounds == 0
    clock.advance(60)
    assert p.rounds == 1
    clock.advance(60)
    assert p.rounds == 2
    p.stop()
    clock.advance(600)
    assert p.rounds == 2
    off, clock = pruner(tmp_path, store)
    off.start()
    clock.advance(600)
    assert off.rounds == 0


def test_a_store_that_is_down_skips_the_round_quietly(tmp_path):
    store = RecordingStore(old=5, fail=True)
    p, clock = pruner(tmp_path, store, DEPTCAST_RETENTION_DAYS="1")
    d = p.run_once()
    assert d.called and d.result == 0 and p.rounds == 1
