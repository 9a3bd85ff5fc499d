"""ThreadedStore with real threads and the reactor: a call whose deadline passes while it waits
for the pool's thread never runs afterwards (a send answered ``unavailable`` is not stored
late), and the probe leaves a busy pool alone."""

import threading

import pytest_twisted
from twisted.internet import reactor, threads

from components.core.sendkeys import Stored
from components.store.sql import DeadlinePassed
from components.store.threaded import StoreUnavailable, ThreadedStore


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
