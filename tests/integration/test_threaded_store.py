"""ThreadedStore with real threads and the reactor: a call whose deadline passes while it waits
for the pool's thread never runs afterwards (a send answered ``unavailable`` is not stored
late), and the probe leaves a busy pool alone."""

import threading
import time

import pytest_twisted
from twisted.internet import reactor, threads

from components.core.sendkeys import Outgoing, Stored
from components.store.sql import DeadlinePassed
from components.store.threaded import StoreUnavailable, ThreadedStore
from tests.support.stores import history_or_pruned


class SlowStore:
    """A store whose first append blocks until released; records every append it ran."""

    unavailable_errors = ()

    def __init__(self):
        self.release = threading.Event()
        self.ran = []
        self.pings = 0

    def append_many(self, items, before_commit=None):
        [item] = items
        if not self.ran:
            self.ran.append(item.message)
            self.release.wait(10)
        else:
            self.ran.append(item.message)
        if before_commit is not None and not before_commit():
            raise DeadlinePassed()
        return [Stored({"message": item.message}, True)]

    def ping(self, write):
        self.pings += 1

    def close(self):
        pass


@pytest_twisted.inlineCallbacks
def test_a_call_past_its_deadline_before_it_started_never_runs():
    store = SlowStore()
    threaded = ThreadedStore(store, reactor, writers=1, readers=1, timeout=0.5)
    try:
        first = threaded.append(None, None, "first", 1)
        second = threaded.append(None, None, "second", 2)
        for d in (first, second):
            try:
                yield d
                raise AssertionError("expected unavailable")
            except StoreUnavailable:
                pass
        # the probe leaves the writes pool alone while a call is under way there
        yield threaded.probe()
        assert store.pings == 1  # the reads pool only
        store.release.set()
        done = threading.Event()  # queued behind whatever the writer thread still has
        threaded._writes.pool.callInThread(done.set)
        yield threads.deferToThread(done.wait, 5)
        assert store.ran == ["first"]  # "second" was answered unavailable and never ran
    finally:
        store.release.set()
        threaded.close()


@pytest_twisted.inlineCallbacks
def test_concurrent_history_calls_are_read_in_batches_each_with_its_own_answer(tmp_path):
    """The calls of one reactor turn are read together, in batches of at most HISTORY_BATCH_MAX;
    each hears its own answer (a pruned position its own refusal), exactly what the store
    answers it alone."""
    from components.core.history import HistoryRequest
    from components.core.names import client_topics
    from components.core.retention import PrunedHistory
    from components.core.targets import SCOPE_DEPT, Target
    from components.core.tokens import Identity
    from components.store import open_store

    store = open_store(str(tmp_path / "s.sqlite3"))
    store.migrate()
    boss = Identity("boss", "mgmt", "publisher")
    for i in range(30):
        store.append(Target(SCOPE_DEPT, "hr" if i % 3 else "it", dept="hr" if i % 3 else "it"), boss, f"m{i}", i)
    store.prune_older(3, batch=100)
    batches = []
    many = store.history_many

    def recorded(requests):
        batches.append(len(requests))
        return many(requests)
    store.history_many = recorded
    threaded = ThreadedStore(store, reactor, writers=1, readers=1, timeout=5)
    try:
        from components.store.threaded import HISTORY_BATCH_MAX
        requests = [HistoryRequest(client_topics("hr" if i % 2 else "it", f"u{i}"), limit=1 + i % 7)
                    for i in range(HISTORY_BATCH_MAX + 9)]
        # a read past positions goes alone (store.history), refused as pruned here
        requests.append(HistoryRequest(client_topics("hr", "x"), positions={"deptcast.dept.hr": 0}))
        calls = [threaded.history(r) for r in requests]
        answers = []
        for d in calls:
            try:
                answers.append((yield d))
            except PrunedHistory as e:
                answers.append(("pruned", e.gone))
        assert answers == [history_or_pruned(store, r) for r in requests]
        assert answers[-1][0] == "pruned"
        assert batches == [HISTORY_BATCH_MAX, 9]  # (the read past positions not among them)
    finally:
        threaded.close()


class QuickStore:
    """Answers every group once released; records each group as it is given (before the wait,
    so the record's order is the order the writers took them, not the order threads woke)."""

    unavailable_errors = ()

    def __init__(self):
        self.groups = []
        self.release = threading.Event()

    def append_many(self, items, before_commit=None):
        self.groups.append([item.message for item in items])
        self.release.wait(10)
        return [Stored({"message": item.message}, True) for item in items]

    def ping(self, write):
        pass

    def close(self):
        pass


class _Block:
    """A context manager that records whether it is entered."""

    def __init__(self):
        self.inside = False
        self.entered = 0

    def __call__(self):
        return self

    def __enter__(self):
        self.inside = True
        self.entered += 1

    def __exit__(self, *exc):
        self.inside = False


@pytest_twisted.inlineCallbacks
def test_the_callers_of_one_group_are_answered_inside_one_block():
    store = QuickStore()
    block = _Block()
    threaded = ThreadedStore(store, reactor, writers=1, readers=1, timeout=5, around_answers=block)
    try:
        answered_inside = []

        def answered(result):
            answered_inside.append((result[0].envelope["message"], block.inside))
        first = threaded.append_many([Outgoing(None, None, "first", 1)]).addCallback(answered)
        # the writer is busy with the first: these two wait and go as one group
        rest = [threaded.append_many([Outgoing(None, None, m, 2)]).addCallback(answered) for m in ("second", "third")]
        store.release.set()
        for d in [first, *rest]:
            yield d
        assert store.groups == [["first"], ["second", "third"]]
        assert answered_inside == [("first", True), ("second", True), ("third", True)]
        assert block.entered == 2
    finally:
        threaded.close()


def wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


class BlockingStore(QuickStore):
    """Holds every group until released; counts the groups under way at once."""

    def __init__(self):
        super().__init__()
        self.lock = threading.Lock()
        self.under_way = 0
        self.most = 0

    def append_many(self, items, before_commit=None):
        with self.lock:
            self.under_way += 1
            self.most = max(self.most, self.under_way)
        try:
            return super().append_many(items, before_commit)
        finally:
            with self.lock:
                self.under_way -= 1


@pytest_twisted.inlineCallbacks
def test_groups_bounds_the_group_commits_under_way_and_the_rest_wait_for_one_group():
    store = BlockingStore()
    threaded = ThreadedStore(store, reactor, writers=4, readers=1, timeout=5, groups=2)
    try:
        calls = [threaded.append_many([Outgoing(None, None, f"m{n}", 1)]) for n in range(6)]
        # both writers hold their groups (a thread waits for it, with a deadline)
        yield threads.deferToThread(wait_for, lambda: store.under_way == 2)
        store.release.set()
        for d in calls:
            yield d
        assert store.most == 2
        assert store.groups[:2] in (
            [["m0"], ["m1"]], [["m1"], ["m0"]])  # the first two went alone, one per writer
        assert sorted(store.groups[2]) == ["m2", "m3", "m4", "m5"]  # the rest in one group
    finally:
        threaded.close()
