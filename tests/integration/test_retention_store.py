"""Retention in the store, on both back ends: old rows go in small batches, the floor of what
went is recorded per topic, and a history request that reaches below it is refused
(:class:`PrunedHistory`) instead of answered with a hole."""

import pytest

from components.core.history import HistoryRequest
from components.core.names import client_topics
from components.core.retention import PrunedHistory
from components.core.targets import SCOPE_ALL, SCOPE_DEPT, Target
from components.core.tokens import Identity

ALICE = Identity("alice", "hr", "member")
BOSS = Identity("boss", "mgmt", "publisher")
HR = Target(SCOPE_DEPT, "hr", dept="hr")
IT = Target(SCOPE_DEPT, "it", dept="it")
ALL = Target(SCOPE_ALL, "All")
TOPICS = client_topics("hr", "alice")


def ids(envelopes):
    return [int(e["id"]) for e in envelopes]


def test_prune_older_removes_the_old_rows_in_batches_and_keeps_the_rest(store):
    old = [store.append(HR if i % 2 else IT, BOSS, f"old {i}", 1000 + i) for i in range(25)]
    new = [store.append(HR, BOSS, f"new {i}", 10_000 + i) for i in range(5)]
    removed = []
    while True:
        n = store.prune_older(5000, batch=10)
        assert n <= 10
        if n == 0:
            break
        removed.append(n)
    assert removed == [10, 10, 5]
    everything = store.history(HistoryRequest(("deptcast.dept.hr", "deptcast.dept.it"), limit=1000))
    assert ids(everything) == ids(new)
    # floors: the highest seq and id removed per topic
    floors = store.floors(store._conn(), ["deptcast.dept.hr", "deptcast.dept.it", "deptcast.all"])
    hr_old = [e for e in old if e["target"] == "hr"]
    it_old = [e for e in old if e["target"] == "it"]
    assert floors["deptcast.dept.hr"].seq == hr_old[-1]["seq"]
    assert floors["deptcast.dept.hr"].id == int(hr_old[-1]["id"])
    assert floors["deptcast.dept.it"].seq == it_old[-1]["seq"]
    assert "deptcast.all" not in floors


def test_prune_topic_keeps_the_newest_per_topic(store):
    hr = [store.append(HR, BOSS, f"hr {i}", 1000 + i) for i in range(12)]
    it = [store.append(IT, BOSS, f"it {i}", 1000 + i) for i in range(3)]
    assert store.topics_over(keep=5) == [("deptcast.dept.hr", 7)]
    assert store.prune_topic("deptcast.dept.hr", 7, batch=4) == 4
    assert store.prune_topic("deptcast.dept.hr", 7, batch=4) == 3
    assert store.prune_topic("deptcast.dept.hr", 7, batch=4) == 0
    assert store.topics_over(keep=5) == []
    left = store.history(HistoryRequest(("deptcast.dept.hr", "deptcast.dept.it"), limit=1000))
    assert ids(left) == sorted(ids(hr[7:]) + ids(it))
    # new messages keep their numbering; the next round cuts again
    store.append(HR, BOSS, "hr 12", 2000)
    assert store.topics_over(keep=5) == [("deptcast.dept.hr", 8)]


def test_history_past_the_floor_is_refused_and_within_it_answered(store):
    sent = [store.append(HR, BOSS, f"m{i}", 1000 + i) for i in range(10)]
    store.append(ALL, BOSS, "all", 5000)
    assert store.prune_older(1005, batch=100) == 5  # m0..m4 (seq 1..5) go
    # by position: a client that has seq 5 or more lost nothing; one with less did
    fine = store.history(HistoryRequest(TOPICS, positions={"deptcast.dept.hr": 5}))
    assert [e["message"] for e in fine] == [f"m{i}" for i in range(5, 10)]
    with pytest.raises(PrunedHistory) as info:
        store.history(HistoryRequest(TOPICS, positions={"deptcast.dept.hr": 3, "deptcast.all": 0}))
    assert info.value.gone == {"deptcast.dept.hr": 6}
    # by id: after an id below the floor is refused; after the floor's id, or from the start, is not
    with pytest.raises(PrunedHistory):
        store.history(HistoryRequest(TOPICS, after=int(sent[2]["id"])))
    after_floor = store.history(HistoryRequest(TOPICS, after=int(sent[4]["id"])))
    assert [e["message"] for e in after_floor] == [f"m{i}" for i in range(5, 10)] + ["all"]
    from_start = store.history(HistoryRequest(TOPICS))
    assert [e["message"] for e in from_start] == [f"m{i}" for i in range(5, 10)] + ["all"]
    newest = store.history(HistoryRequest(TOPICS, after=int(sent[0]["id"]), latest=True, limit=2))
    assert [e["message"] for e in newest] == ["m9", "all"]
    # another department's floor does not concern this reader
    other = store.history(HistoryRequest(client_topics("it", "carol"), after=1))
    assert [e["message"] for e in other] == ["all"]


def test_ping_answers(store):
    store.ping(True)
    store.ping(False)
