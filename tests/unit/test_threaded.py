"""The threaded store's deadlines (:class:`components.store.threaded.ThreadedStore`) with a
store held by the test: a call that waited past its deadline is never run, one that reaches its
commit past it is rolled back, and a late failure
of a call older than the store's last answer does not mark the store down again."""

import threading
from typing import Any, Dict, List

import pytest_twisted
from twisted.internet import defer, reactor, task

from components.core.metrics import REGISTRY
from components.core.sendkeys import Outgoing, Stored
from components.store.sql import DeadlinePassed
from components.store.threaded import StoreUnavailable, ThreadedStore


class Stuck(Exception):
    """What the held store raises for a call the test fails (an 'unavailable' error)."""


class HeldStore:
    """A store whose appends wait until the test releases them, and record what ran."""

    unavailable_errors = (Stuck,)

    def __init__(self) -> None:
        self.gate = threading.Event()
        #: a gate per message, where one is wanted
        self.gates: Dict[str, threading.Event] = {}
        self.ran: List[str] = []
        self.fail: List[str] = []
        self.committed: List[str] = []

    def append_many(self, items: List[Outgoing], before_commit=None) -> List[Stored]:
        results = []
        for item in items:
            self.gates.get(item.message, self.gate).wait(10)
            self.ran.append(item.message)
            if item.message in self.fail:
                raise Stuck(item.message)
            results.append(Stored({"message": item.message}, True))
        if before_commit is not None and not before_commit():
            raise DeadlinePassed()
        self.committed += [item.message for item in items]
        return results

    def close(self) -> None:
        pass


def sleep(seconds: float) -> defer.Deferred:
    return task.deferLater(reactor, seconds, lambda: None)


def outcome(d: defer.Deferred) -> defer.Deferred:
    return d.addCallbacks(lambda r: r["message"], lambda f: f.trap(StoreUnavailable) and "unavailable")


@pytest_twisted.inlineCallbacks
def test_a_call_past_its_deadline_is_never_run_or_rolled_back():
    held = HeldStore()
    store = ThreadedStore(held, reactor, writers=1, timeout=0.3, unavailable_errors=(Stuck,))
    late: List[Any] = []
    try:
        first = outcome(store.append(None, None, "running", 0, on_late=late.append))  # takes the one thread
        queued = outcome(store.append(None, None, "queued", 0, on_late=late.append))  # waits for it
        assert (yield first) == "unavailable" and (yield queued) == "unavailable"
        held.gate.set()  # the store answers again
        after = yield outcome(store.append(None, None, "after", 0))
        assert after == "after"
        # the running call reached its commit after its deadline: rolled back; the queued one
        # never ran: both senders heard "unavailable", nothing of theirs is stored
        assert held.ran == ["running", "after"]
        assert held.committed == ["after"]
        assert late == []
    finally:
        held.gate.set()
        store.close()


def _store_metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, {"operation": "append_many", **labels}) or 0.0


@pytest_twisted.inlineCallbacks
def test_a_call_that_never_ran_counts_as_a_deadline_only():
    """Its caller heard "unavailable" when the deadline passed (counted then): it is neither a
    store error nor a duration when its turn comes and it is skipped."""
    held = HeldStore()
    store = ThreadedStore(held, reactor, writers=1, timeout=0.3, unavailable_errors=(Stuck,))
    before = {kind: _store_metric("deptcast_store_errors_total", kind=kind) for kind in ("deadline", "error")}
    durations = _store_metric("deptcast_store_operation_seconds_count")
    try:
        running = outcome(store.append(None, None, "running", 0))  # takes the one thread
        queued = outcome(store.append(None, None, "queued", 0))  # waits for it, past its deadline
        assert (yield running) == "unavailable" and (yield queued) == "unavailable"
        held.gate.set()
        assert (yield outcome(store.append(None, None, "after", 0))) == "after"  # runs after the skipped one
        assert held.ran == ["running", "after"]
        assert _store_metric("deptcast_store_errors_total", kind="deadline") - before["deadline"] == 2
        assert _store_metric("deptcast_store_errors_total", kind="error") == before["error"]
        assert _store_metric("deptcast_store_operation_seconds_count") - durations == 1  # after (running: rolled back)
    finally:
        held.gate.set()
        store.close()


@pytest_twisted.inlineCallbacks
def test_an_old_failure_after_the_store_answered_again_does_not_mark_it_down():
    held = HeldStore()
    held.fail.append("old")
    held.gates["old"] = threading.Event()
    store = ThreadedStore(held, reactor, writers=2, timeout=0.3, unavailable_errors=(Stuck,))
    changes: List[Any] = []
    store.on_change(lambda what, up: changes.append((what, up)))
    try:
        old = outcome(store.append(None, None, "old", 0))  # held, like a call a frozen database holds
        yield sleep(0.05)
        assert (yield old) == "unavailable"  # its deadline
        assert changes == [("writes", False)]
        held.gate.set()  # the database answers again: a newer call succeeds
        assert (yield outcome(store.append(None, None, "newer", 0))) == "newer"
        assert changes == [("writes", False), ("writes", True)]
        held.gates["old"].set()  # then the old call fails (e.g. its statement timed out)
        yield sleep(0.2)
        assert held.ran == ["newer", "old"]
        assert changes == [("writes", False), ("writes", True)]  # not down again for old news
        assert store.up is True
    finally:
        held.gate.set()
        for gate in held.gates.values():
            gate.set()
        store.close()


@pytest_twisted.inlineCallbacks
def test_an_old_success_after_the_store_was_found_down_does_not_mark_it_up():
    """A commit under way when the database went away may still get through (PostgreSQL's fast
    shutdown ends its backends one by one): the store is not back until a call that began after
    it was found down succeeds, so an outage is one 'unavailable' and one 'available again'."""
    held = HeldStore()
    held.gates["old"] = threading.Event()
    held.fail.append("failing")
    held.gate.set()
    store = ThreadedStore(held, reactor, writers=2, groups=2, timeout=5, unavailable_errors=(Stuck,))
    changes: List[Any] = []
    store.on_change(lambda what, up: changes.append((what, up)))
    try:
        old = outcome(store.append(None, None, "old", 0))  # under way, held by its gate
        yield store.append(None, None, "warm", 0)  # the store answers: writes are up
        assert changes == [("writes", True)]
        assert (yield outcome(store.append(None, None, "failing", 0))) == "unavailable"
        assert changes == [("writes", True), ("writes", False)]
        held.gates["old"].set()  # the old call's commit gets through after all
        assert (yield old) == "old"
        assert changes == [("writes", True), ("writes", False)]  # not up again for old news
        assert store.up is False
        assert (yield outcome(store.append(None, None, "newer", 0))) == "newer"
        assert changes == [("writes", True), ("writes", False), ("writes", True)]
        assert held.ran == ["warm", "failing", "old", "newer"]
    finally:
        held.gate.set()
        for gate in held.gates.values():
            gate.set()
        store.close()


@pytest_twisted.inlineCallbacks
def test_a_queued_call_missing_its_deadline_after_the_store_answered_does_not_mark_it_down():
    """After a freeze the calls queued behind the held ones run late: the store is answering,
    so their deadlines passing is not news."""
    held = HeldStore()
    held.gates["queued"] = threading.Event()
    store = ThreadedStore(held, reactor, writers=1, timeout=0.3, unavailable_errors=(Stuck,))
    changes: List[Any] = []
    store.on_change(lambda what, up: changes.append((what, up)))
    try:
        held_call = outcome(store.append(None, None, "held", 0))
        yield sleep(0.15)
        queued = outcome(store.append(None, None, "queued", 0))  # waits for the one thread
        assert (yield held_call) == "unavailable"
        held.gate.set()  # the held call is answered (late), then the queued one starts, slowly
        yield sleep(0.05)
        assert changes == [("writes", False), ("writes", True)]
        assert (yield queued) == "unavailable"  # its own deadline, after the store answered
        assert changes == [("writes", False), ("writes", True)]
    finally:
        held.gate.set()
        for gate in held.gates.values():
            gate.set()
        store.close()


@pytest_twisted.inlineCallbacks
def test_a_busy_store_that_answers_queues_calls_past_the_small_queue():
    """A storm of clients asks for history faster than the threads answer: while the store
    answers, calls past ``queue`` wait for a thread (every one refused would be a client
    retrying); only past ``busy_queue`` do they fail at once."""
    held = HeldStore()
    store = ThreadedStore(held, reactor, writers=1, timeout=5, queue=2, busy_queue=5, unavailable_errors=(Stuck,))
    try:
        held.gate.set()
        assert (yield outcome(store.append(None, None, "first", 0))) == "first"  # the store answers
        held.gate.clear()
        calls = [outcome(store.append(None, None, f"m{i}", 0)) for i in range(7)]
        # 1 running + 5 waiting; the 7th fails at once
        assert [d.called for d in calls] == [False] * 6 + [True]
        assert (yield calls[6]) == "unavailable"
        held.gate.set()
        assert (yield defer.gatherResults(calls[:6])) == [f"m{i}" for i in range(6)]
        assert held.ran == ["first"] + [f"m{i}" for i in range(6)]
    finally:
        held.gate.set()
        store.close()


@pytest_twisted.inlineCallbacks
def test_a_store_known_down_takes_only_the_small_queue():
    """Before its first answer, and once a call missed its deadline, the store is not known to
    answer: calls past ``queue`` fail at once instead of piling up behind stuck threads."""
    held = HeldStore()
    store = ThreadedStore(held, reactor, writers=1, timeout=0.2, queue=2, busy_queue=5, unavailable_errors=(Stuck,))
    try:
        calls = [outcome(store.append(None, None, f"a{i}", 0)) for i in range(4)]  # never answered yet
        assert [d.called for d in calls] == [False, False, False, True]
        assert (yield defer.gatherResults(calls)) == ["unavailable"] * 4  # the deadlines pass: down
        calls = [outcome(store.append(None, None, f"b{i}", 0)) for i in range(4)]
        # the held calls (the running one, and the group of the two queued ones behind it) still
        # hold the pool until their thread ends: one call takes the last place, the rest are
        # refused at once
        assert [d.called for d in calls] == [False, True, True, True]
        assert (yield defer.gatherResults(calls)) == ["unavailable"] * 4
    finally:
        held.gate.set()
        store.close()


@pytest_twisted.inlineCallbacks
def test_sends_that_wait_for_the_writer_go_in_one_group_commit_in_order():
    held = HeldStore()
    groups: List[List[str]] = []
    real = held.append_many

    def recording(items, before_commit=None):
        groups.append([item.message for item in items])
        return real(items, before_commit=before_commit)
    held.append_many = recording  # type: ignore[method-assign]  # records each transaction
    store = ThreadedStore(held, reactor, writers=1, timeout=5, unavailable_errors=(Stuck,))
    try:
        first = outcome(store.append(None, None, "first", 0))  # holds the one writer
        waiting = [outcome(store.append(None, None, f"w{i}", 0)) for i in range(5)]
        held.gate.set()
        assert (yield first) == "first"
        assert (yield defer.gatherResults(waiting)) == [f"w{i}" for i in range(5)]
        assert groups == [["first"], [f"w{i}" for i in range(5)]]
        assert held.committed == ["first"] + [f"w{i}" for i in range(5)]
    finally:
        held.gate.set()
        store.close()
