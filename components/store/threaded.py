"""A synchronous store run off the reactor thread, with deadlines, and its availability.

Writes run on one pool, reads on another (SQLite in WAL mode: a slow read never holds a
write). Every call has a deadline: a store that is down, frozen or locked fails the call
with :class:`StoreUnavailable` after ``timeout`` seconds instead of hanging it, and once the
store's threads are all stuck, further calls fail at once rather than queue without bound.
Writes and reads are judged apart (SQLite locked by another writer still answers reads):
each is *down* from a call that failed that way until one succeeds again, with one log line
each way. A call that fails (or misses its deadline) when the store has answered another
call since it began tells nothing new: it does not mark the store down (after a freeze, the
calls it held, and those queued behind them, end in any order).

A call still waiting for a thread when its deadline passes is never started: its caller
has heard ``unavailable`` and may retry, so it must not be stored after all.
"""

import threading
import time
from collections import deque
from contextlib import nullcontext
from typing import Any, Callable, ContextManager, Deque, Dict, List, Optional, Sequence, Tuple, Type

from twisted.internet import defer, threads
import txaio
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from components.core.history import HistoryRequest
from components.core.receipts import Notice
from components.core.sendkeys import Outgoing, Stored
from components.core.targets import Target
from components.core.tokens import Identity
from components.store import Store
from components.store.observe import GROUP_SIZES, observe, observe_deadline
from components.store.sql import DeadlinePassed

txaio.use_twisted()  # a Twisted module: its txaio loggers are Twisted's


class StoreUnavailable(Exception):
    """The store did not answer in time, or cannot be reached; the caller may retry.

    :param reason: what happened, for the node's log (never shown to clients)
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _DaemonThreadPool(ThreadPool):
    """A thread stuck on a frozen database must not keep the process from exiting."""

    # Twisted's is the Thread class, called as self.threadFactory(...)
    def threadFactory(self, *args: Any, **kwargs: Any) -> threading.Thread:  # type: ignore[override]  # called alike
        return threading.Thread(*args, daemon=True, **kwargs)


class _Pool:
    """A thread pool, how many calls it holds (running or waiting), and whether its calls
    find the store answering (``None`` before the first call)."""

    def __init__(self, what: str, threads_: int, queue: int, busy_queue: int) -> None:
        self.what = what
        self.pool = _DaemonThreadPool(minthreads=1, maxthreads=threads_, name=f"deptcast-store-{what}")
        #: calls held while the store is down (or before it first answered: maybe it never will)
        self.capacity = threads_ + queue
        #: calls held while the store answers
        self.busy_capacity = threads_ + max(queue, busy_queue)
        self.in_flight = 0
        self.up: Optional[bool] = None
        self.down_since: Optional[float] = None
        #: when (monotonic) the call whose failure found the store down began running
        self.down_by: Optional[float] = None
        #: when (reactor seconds) a call last succeeded
        self.last_answered: Optional[float] = None

    @property
    def full(self) -> bool:
        """Whether a further call must fail at once."""
        return self.in_flight >= (self.busy_capacity if self.up else self.capacity)


class _Entry:
    """One call of :meth:`ThreadedStore.append_many` waiting for (or in) a group commit."""

    def __init__(self, items: List[Outgoing], began: float, deadline: float,
                 on_late: Optional[Callable[[List[Stored]], None]]) -> None:
        self.items = items
        self.began = began
        self.deadline = deadline
        self.on_late = on_late
        self.result: defer.Deferred = defer.Deferred()
        self.timer: Any = None


class _Read:
    """One call of :meth:`ThreadedStore.history` waiting for (or in) a batch."""

    __slots__ = ("request", "began", "result")

    def __init__(self, request: HistoryRequest, began: float) -> None:
        self.request = request
        self.began = began
        self.result: defer.Deferred = defer.Deferred()


#: the most history calls one batch reads
HISTORY_BATCH_MAX = 64


def _split(group: List[_Entry], results: List[Stored]) -> List[Tuple[_Entry, List[Stored]]]:
    """Each call's share of a group's results."""
    out, at = [], 0
    for entry in group:
        out.append((entry, results[at:at + len(entry.items)]))
        at += len(entry.items)
    return out


#: the most messages one group commit takes (a call's items are never split)
GROUP_MAX = 2000


class _Expired(Exception):
    """A call's deadline passed before a thread could start it: it was not run."""


class ThreadedStore:
    """Runs a synchronous store in thread pools and answers with Deferreds.

    :param writers: threads that may write at once (1 for SQLite)
    :param readers: threads that read (history)
    :param timeout: seconds a call may take before it fails with :class:`StoreUnavailable`
    :param queue: calls that may wait for a pool's thread when the store is not known to
        answer (down, or before its first answer); further calls fail at once
    :param busy_queue: calls that may wait for a busy pool's thread while the store answers
    :param unavailable_errors: the store's exceptions that mean "down, locked or frozen"
        (others are bugs, passed on as they are)
    :param groups: group commits under way at once (default: one per writer thread). Where
        appends take one lock anyway (PostgreSQL's append lock), two are enough: one holds the
        lock while the next waits for it with its BEGIN done, and everything that arrives
        meanwhile waits for the one after, in one transaction (with 4, sends went in groups of
        one or two, each paying its own round trips)
    :param around_answers: a block the callers of one group commit are answered in (the node
        passes :func:`components.upstream.hotpath.corked`: what they publish and answer goes
        out as one write per connection)
    """

    log = txaio.make_logger()

    def __init__(self, store: Store, reactor: Any, writers: int = 1, readers: int = 1, timeout: float = 5.0,
                 queue: int = 100, busy_queue: int = 10000,
                 unavailable_errors: Tuple[Type[BaseException], ...] = (),
                 around_answers: Callable[[], ContextManager[Any]] = nullcontext,
                 groups: Optional[int] = None) -> None:
        self.store = store
        self._around_answers = around_answers
        self._reactor = reactor
        self._timeout = timeout
        self._unavailable_errors = unavailable_errors
        self._writes = _Pool("writes", writers, queue, busy_queue)
        self._reads = _Pool("reads", readers, queue, busy_queue)
        for p in (self._writes, self._reads):
            p.pool.start()
        self._on_change: List[Callable[[str, bool], None]] = []
        # group commit: calls waiting for a writer, and the groups being written
        self._writers = writers if groups is None else max(1, min(groups, writers))
        self._queue: Deque[_Entry] = deque()
        self._flushing = 0
        # history reads: the calls of this reactor turn, sent to the readers at its end
        self._history_queue: Deque[_Read] = deque()
        self._history_flush_due = False

    @property
    def up(self) -> Optional[bool]:
        """``None`` before any call; else whether both writes and reads last found the store
        answering."""
        states = [p.up for p in (self._writes, self._reads) if p.up is not None]
        return None if not states else all(states)

    def on_change(self, callback: Callable[[str, bool], None]) -> None:
        """Call ``callback(what, up)`` whenever writes or reads go down or come back."""
        self._on_change.append(callback)

    # -- availability

    def _went_down(self, pool: _Pool, reason: str, started: Optional[float] = None,
                   ran_at: Optional[float] = None) -> None:
        """``started``: when the failed call was asked (reactor seconds); ``ran_at``: when it
        began running (monotonic), if it ran."""
        if pool.up is False:
            return
        if started is not None and pool.last_answered is not None and pool.last_answered >= started:
            return  # the store answered since this call began: its failure is old news
        pool.up = False
        pool.down_since = time.monotonic()
        pool.down_by = ran_at
        self.log.warn("deptcast store: {what} unavailable ({reason}); they are answered deptcast.error.unavailable "
                      "until the store answers again", what=pool.what, reason=reason)
        for callback in self._on_change:
            callback(pool.what, False)

    def _answered(self, pool: _Pool, ran_at: Optional[float] = None) -> None:
        """A call of ``pool`` succeeded; ``ran_at`` (monotonic) is when it began running."""
        pool.last_answered = self._reactor.seconds()
        if pool.up is True:
            return
        if pool.up is False and ran_at is not None and pool.down_by is not None and ran_at < pool.down_by:
            # it began before the call whose failure found the store down (a commit that got
            # through as the database went away): old news, not a sign that it answers again
            return
        if pool.up is False and pool.down_since is not None:
            self.log.info("deptcast store: {what} available again after {seconds:.1f} s",
                          what=pool.what, seconds=time.monotonic() - pool.down_since)
        pool.up = True
        pool.down_since = None
        for callback in self._on_change:
            callback(pool.what, True)

    def _reason(self, failure: Failure) -> str:
        text = str(failure.value).strip().splitlines()
        return f"{type(failure.value).__name__}: {text[0][:200]}" if text else type(failure.value).__name__

    # -- running calls

    def _run(self, pool: _Pool, fn: Callable, *args, on_late: Optional[Callable[[Any], None]] = None,
             gated: bool = False, timeout: Optional[float] = None, began: Optional[float] = None
             ) -> defer.Deferred:
        """Run ``fn(*args)`` on ``pool`` with a deadline of ``timeout`` seconds (the store's
        timeout by default).

        :param gated: ``fn`` takes ``before_commit``: a write that has not reached its commit
            by the deadline is rolled back (its caller hears ``unavailable`` and nothing was
            stored); one whose commit is under way at the deadline is waited for one more
            timeout, then answered ``unavailable`` too (its outcome unknown: ``on_late`` hears
            of a commit that completes after all)
        :param began: when the caller asked (reactor seconds; by default now)
        """
        if pool.full:
            self._went_down(pool, f"{pool.in_flight} calls already waiting for it")
            return defer.fail(StoreUnavailable("the store's threads are all busy"))
        pool.in_flight += 1
        result: defer.Deferred = defer.Deferred()
        started = self._reactor.seconds() if began is None else began
        deadline = self._timeout if timeout is None else max(0.0, timeout)
        # the call's state, shared by the reactor (its deadline) and the pool's thread (its
        # commit): "waiting", "running", "committing" or "expired"
        state = ["waiting"]
        guard = threading.Lock()
        # when (monotonic) the call began running in the store, once it has
        ran_at: List[Optional[float]] = [None]

        def give_up() -> None:
            observe_deadline(fn.__name__)
            self._went_down(pool, f"no answer within {deadline:g} s", started, ran_at[0])
            result.errback(StoreUnavailable(f"no answer within {deadline:g} s"))

        def expire() -> None:
            with guard:
                committing = state[0] == "committing"
                if not committing:
                    state[0] = "expired"
            if committing:
                # the commit is on its way: its outcome is the answer, unless the store froze
                # in the middle of it
                timers[0] = self._reactor.callLater(self._timeout, give_up)
                return
            give_up()

        def before_commit() -> bool:
            with guard:
                if state[0] == "expired":
                    return False
                state[0] = "committing"
                return True

        def call() -> Any:
            with guard:
                if state[0] == "expired":
                    raise _Expired()
                state[0] = "running"
            ran_at[0] = time.monotonic()
            if gated:
                return fn(*args, before_commit=before_commit)
            return fn(*args)

        timers = [self._reactor.callLater(deadline, expire)]

        def done(outcome: Any) -> None:
            pool.in_flight -= 1
            if timers[0].active():
                timers[0].cancel()
            if isinstance(outcome, Failure) and outcome.check(_Expired):
                return  # never ran: its caller heard "unavailable" (and it was counted) at the deadline
            if isinstance(outcome, Failure) and outcome.check(DeadlinePassed):
                self._answered(pool, ran_at[0])  # rolled back (its caller heard "unavailable"), but the store answered
                return
            observe(fn.__name__, self._reactor.seconds() - started, outcome, self._unavailable_errors)
            if isinstance(outcome, Failure):
                if self._unavailable_errors and outcome.check(*self._unavailable_errors):
                    self._went_down(pool, self._reason(outcome), started, ran_at[0])
                    outcome = Failure(StoreUnavailable(self._reason(outcome)))
            else:
                self._answered(pool, ran_at[0])
            if not result.called:
                result.callback(outcome) if not isinstance(outcome, Failure) else result.errback(outcome)
            elif on_late is not None and not isinstance(outcome, Failure):
                self.log.info("deptcast store: a call answered after its deadline ({seconds:.1f} s)",
                              seconds=self._reactor.seconds() - started)
                on_late(outcome)
        threads.deferToThreadPool(self._reactor, pool.pool, call).addBoth(done)
        return result

    def migrate(self) -> defer.Deferred:
        return self._run(self._writes, self.store.migrate)

    def append(self, target: Target, sender: Identity, message: str, ts: int,
               on_late: Optional[Callable[[Dict[str, Any]], None]] = None) -> defer.Deferred:
        """Store one message; fire with its envelope.

        :param on_late: called with the envelope if the append fails its deadline but the
            store commits it afterwards (the message is stored: it should still be published)
        """
        late = None if on_late is None else (lambda stored: on_late(stored[0].envelope))
        d = self.append_many([Outgoing(target, sender, message, ts)], on_late=late)
        return d.addCallback(lambda stored: stored[0].envelope)

    def append_many(self, items: Sequence[Outgoing],
                    on_late: Optional[Callable[[List[Stored]], None]] = None) -> defer.Deferred:
        """Store ``items`` (in order, with their keys' rules: see :meth:`SqlStore.append_many
        <components.store.sql.SqlStore.append_many>`); fire with one :class:`Stored` each.

        Group commit: calls that arrive while the writers are busy wait in a queue, and a
        writer that comes free takes all of them (up to :data:`GROUP_MAX` items) into one
        transaction. A call still queued at its deadline is never run; a group is rolled
        back if its earliest deadline passes before its commit.

        :param on_late: called with the results if the store commits them after all, after
            the caller heard ``unavailable`` (the store froze during the commit)
        """
        if not items:
            return defer.succeed([])
        pool = self._writes
        waiting = len(self._queue) + pool.in_flight
        if waiting >= (pool.busy_capacity if pool.up else pool.capacity):
            self._went_down(pool, f"{waiting} calls already waiting for it")
            return defer.fail(StoreUnavailable("the store's threads are all busy"))
        now = self._reactor.seconds()
        entry = _Entry(list(items), now, now + self._timeout, on_late)
        entry.timer = self._reactor.callLater(self._timeout, self._expire_queued, entry)
        self._queue.append(entry)
        self._flush()
        return entry.result

    def _expire_queued(self, entry: "_Entry") -> None:
        if entry not in self._queue:
            return
        self._queue.remove(entry)
        observe_deadline("append_many")
        self._went_down(self._writes, f"no writer free within {self._timeout:g} s", entry.began)
        entry.result.errback(StoreUnavailable(f"no answer within {self._timeout:g} s"))

    def _flush(self) -> None:
        while self._flushing < self._writers and self._queue:
            group: List[_Entry] = []
            count = 0
            while self._queue and (not group or count + len(self._queue[0].items) <= GROUP_MAX):
                entry = self._queue.popleft()
                if entry.timer is not None and entry.timer.active():
                    entry.timer.cancel()
                group.append(entry)
                count += len(entry.items)
            self._flushing += 1
            GROUP_SIZES.observe(count)
            remaining = min(e.deadline for e in group) - self._reactor.seconds()
            began = min(e.began for e in group)
            items = [item for e in group for item in e.items]

            def late(results: List[Stored], group: List[_Entry] = group) -> None:
                for entry, part in _split(group, results):
                    if entry.on_late is not None:
                        entry.on_late(part)
            d = self._run(self._writes, self.store.append_many, items, gated=True, timeout=remaining, on_late=late,
                          began=began)
            d.addBoth(self._flushed, group)

    def _flushed(self, outcome: Any, group: List["_Entry"]) -> None:
        self._flushing -= 1
        # the next group goes to the writer first: it writes while this one's callers publish
        self._flush()
        with self._around_answers():
            if isinstance(outcome, Failure):
                for entry in group:
                    entry.result.errback(outcome)
            else:
                for entry, part in _split(group, outcome):
                    entry.result.callback(part)

    def sent_keys(self, sender: Identity, keys: Sequence[str]) -> defer.Deferred:
        """What ``sender`` stored under ``keys``: ``{key: (fingerprint, first envelope)}``."""
        return self._run(self._reads, self.store.sent_keys, sender, list(keys))

    def history(self, request: HistoryRequest) -> defer.Deferred:
        """Fire with the envelopes of ``request`` (see :meth:`Store.history
        <components.store.Store.history>`), or fail with its ``PrunedHistory``.

        The first pages (no ``positions``) asked in one turn of the reactor are read together:
        at the end of the turn they go to the reader threads as batches (up to
        :data:`HISTORY_BATCH_MAX` each), and a reader reads what a batch shares once
        (:meth:`SqlStore.history_many <components.store.sql.SqlStore.history_many>`): a storm
        of connecting clients costs a query per batch, not one each. The batches queue at the
        pool as single calls do: a reader goes on to the next without waiting for the reactor.

        Reads past ``positions`` (a reconnecting client catching up, page after page until an
        empty one) go one by one: batched, the answers of a failover's catch-up came back in
        waves, a wave often slower than the notices it chased, so that clients kept finding
        one more page (``bench/failover.py``: up to 77 s for 2,000 clients instead of 11-15 s).
        """
        if request.positions is not None:
            return self._run(self._reads, self.store.history, request)
        entry = _Read(request, self._reactor.seconds())
        self._history_queue.append(entry)
        if not self._history_flush_due:
            self._history_flush_due = True
            self._reactor.callLater(0, self._read_histories)
        return entry.result

    def _read_histories(self) -> None:
        self._history_flush_due = False
        while self._history_queue:
            batch = [self._history_queue.popleft()
                     for _ in range(min(HISTORY_BATCH_MAX, len(self._history_queue)))]
            began = batch[0].began
            remaining = began + self._timeout - self._reactor.seconds()
            d = self._run(self._reads, self.store.history_many, [e.request for e in batch],
                          timeout=remaining, began=began)
            d.addBoth(self._histories_read, batch)

    def _histories_read(self, outcome: Any, batch: List["_Read"]) -> None:
        if isinstance(outcome, Failure):
            for entry in batch:
                entry.result.errback(outcome)
            return
        for entry, answer in zip(batch, outcome):
            if isinstance(answer, Exception):
                entry.result.errback(Failure(answer))
            else:
                entry.result.callback(answer)

    def heads(self, topics: Sequence[str]) -> defer.Deferred:
        """Each topic's last committed seq (topics without messages are left out)."""
        return self._run(self._reads, self.store.heads, list(topics))

    @property
    def states(self) -> Dict[str, Optional[bool]]:
        """Whether writes and reads last found the store answering (``None``: not asked yet).

        :rtype: dict
        """
        return {"writes": self._writes.up, "reads": self._reads.up}

    def probe(self) -> defer.Deferred:
        """One cheap round trip through each pool, so their states stay current while no
        client calls (a store that went away is noticed within one probe)."""
        # a pool with calls under way needs no probe (they tell), and must not wait behind one
        return defer.DeferredList([self._run(p, self.store.ping, write) for p, write in
                                   ((self._writes, True), (self._reads, False)) if not p.in_flight],
                                  consumeErrors=True)

    def prune_older(self, cutoff_ts: int, batch: int) -> defer.Deferred:
        """Remove up to ``batch`` messages older than ``cutoff_ts`` (on the writes pool, between sends)."""
        return self._run(self._writes, self.store.prune_older, cutoff_ts, batch)

    def topics_over(self, keep: int) -> defer.Deferred:
        """Topics with more than ``keep`` messages, each with the seq up to which they go."""
        return self._run(self._reads, self.store.topics_over, keep)

    def prune_topic(self, topic: str, upto_seq: int, batch: int) -> defer.Deferred:
        """Remove up to ``batch`` messages of ``topic`` with a seq up to ``upto_seq``."""
        return self._run(self._writes, self.store.prune_topic, topic, upto_seq, batch)

    # -- receipts and the roster: bulk writes on the writes pool, questions on the reads pool

    def roster_touch(self, rows: Sequence[Tuple[str, str, int]]) -> defer.Deferred:
        return self._run(self._writes, self.store.roster_touch, list(rows))

    def roster_import(self, rows: Sequence[Tuple[str, str]], ms: int) -> defer.Deferred:
        return self._run(self._writes, self.store.roster_import, list(rows), ms)

    def roster_remove(self, dept: str, user: str) -> defer.Deferred:
        return self._run(self._writes, self.store.roster_remove, dept, user)

    def roster(self, dept: str) -> defer.Deferred:
        return self._run(self._reads, self.store.roster, dept)

    def notices(self, ids: Sequence[int]) -> defer.Deferred:
        return self._run(self._reads, self.store.notices, list(ids))

    def add_receipts(self, rows: Sequence[Tuple[int, str, str, str, int]]) -> defer.Deferred:
        return self._run(self._writes, self.store.add_receipts, list(rows))

    def receipt_counts(self, notice: Notice) -> defer.Deferred:
        return self._run(self._reads, self.store.receipt_counts, notice)

    def recipients(self, notice: Notice, state: str, after: Optional[Tuple[str, str]], limit: int) -> defer.Deferred:
        return self._run(self._reads, self.store.recipients, notice, state, after, limit)

    def revoke(self, dept: str, user: str, at: int) -> defer.Deferred:
        """Record a revocation; fire with its row id."""
        return self._run(self._writes, self.store.revoke, dept, user, at)

    def revocations_since(self, after_id: int, since_at: int) -> defer.Deferred:
        """The revocations past ``after_id`` or from the second ``since_at`` on."""
        return self._run(self._reads, self.store.revocations_since, after_id, since_at)

    def prune_revocations(self, before_at: int) -> defer.Deferred:
        """Forget the revocations older than ``before_at``."""
        return self._run(self._writes, self.store.prune_revocations, before_at)

    def close(self) -> None:
        """Close the store's connections and let the pools' threads end, without waiting for
        a thread that a frozen database holds."""
        def stop() -> None:
            try:
                self.store.close()
            finally:
                for p in (self._writes, self._reads):
                    p.pool.stop()
        threading.Thread(target=stop, name="deptcast-store-close", daemon=True).start()
