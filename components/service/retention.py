"""Retention in the background: ``DEPTCAST_RETENTION_DAYS`` and ``DEPTCAST_RETENTION_MESSAGES``.

Every :data:`INTERVAL` seconds the pruner removes what the rules let go, in transactions of
at most :data:`BATCH` rows on the store's write pool, with a :data:`PAUSE` between two, so a
send waits for one small batch at most (on SQLite, the one writer). On PostgreSQL every node
runs a pruner; one prunes at a time (an advisory lock), the others skip the round.

What went is recorded per topic (the floor), so a client whose resume position is older is
answered ``deptcast.error.pruned`` rather than with a hole (see :mod:`components.core.retention`).
"""

import time
from typing import Any, Callable, Optional

from twisted.internet import defer, task
import txaio

from components.core.metrics import RETENTION_PRUNED
from components.core.retention import age_cutoff
from components.core.settings import Settings
from components.service.slot import Slot
from components.store.threaded import StoreUnavailable

txaio.use_twisted()  # a Twisted module: its txaio loggers are Twisted's

#: rows per transaction: a few milliseconds of the writer's time
BATCH = 500
#: seconds between two batches, for the sends queued meanwhile
PAUSE = 0.02
#: seconds between two rounds
INTERVAL = 60.0
#: most topics looked at per round for the per-topic rule (the next round takes the rest)
TOPICS_PER_ROUND = 1000


def retention_text(settings: Settings) -> str:
    """The rules in words, for the log.

    :rtype: str
    """
    rules = []
    if settings.retention_days:
        rules.append(f"older than {settings.retention_days:g} days")
    if settings.retention_messages:
        rules.append(f"beyond the newest {settings.retention_messages} per topic")
    return " and ".join(rules) if rules else "off"


class Pruner:
    """Runs the retention rules of ``settings`` against the message service's store.

    :param messages: the runtime's slot of the message service (the pruner follows restarts)
    :param now: wall-clock seconds (messages' ``ts`` are wall-clock milliseconds)
    """

    log = txaio.make_logger()

    def __init__(self, settings: Settings, messages: Slot, clock: Any, interval: float = INTERVAL,
                 batch: int = BATCH, pause: float = PAUSE, now: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._messages = messages
        self._clock = clock
        self._batch = batch
        self._pause = pause
        self._now = now
        self._loop = task.LoopingCall(self.run_once)
        self._loop.clock = clock
        self._interval = interval
        self.rounds = 0

    @property
    def enabled(self) -> bool:
        return bool(self._settings.retention_days or self._settings.retention_messages)

    def start(self, delay: Optional[float] = None) -> None:
        """Run a round every ``interval`` seconds, the first after ``delay`` (default: one
        interval; the node's start is busy enough)."""
        if not self.enabled:
            return
        self.log.info("deptcast retention: removing messages {rules}, every {interval:g} s in batches of {batch}",
                      rules=retention_text(self._settings), interval=self._interval, batch=self._batch)
        first = self._interval if delay is None else delay
        self._first = self._clock.callLater(first, lambda: self._loop.start(self._interval, now=True))

    def stop(self) -> None:
        first = getattr(self, "_first", None)
        if first is not None and first.active():
            first.cancel()
        if self._loop.running:
            self._loop.stop()

    @defer.inlineCallbacks
    def run_once(self):
        """One round of both rules; fires with how many messages went."""
        service = self._messages.value
        if service is None or not service.store_ready:
            return 0
        store = service.store
        started = self._clock.seconds()
        removed = {"age": 0, "count": 0}
        try:
            if self._settings.retention_days:
                cutoff = age_cutoff(int(self._now() * 1000), self._settings.retention_days)
                while True:
                    n = yield store.prune_older(cutoff, self._batch)
                    removed["age"] += n
                    if n < self._batch:
                        break
                    yield task.deferLater(self._clock, self._pause, lambda: None)
            if self._settings.retention_messages:
                topics = yield store.topics_over(self._settings.retention_messages)
                for topic, upto in topics[:TOPICS_PER_ROUND]:
                    while True:
                        n = yield store.prune_topic(topic, upto, self._batch)
                        removed["count"] += n
                        if n < self._batch:
                            break
                        yield task.deferLater(self._clock, self._pause, lambda: None)
        except StoreUnavailable:
            pass  # the store logs its state; the next round tries again
        except Exception:
            self.log.failure("deptcast retention: a round failed")
        finally:
            self.rounds += 1
            for rule, n in removed.items():
                if n:
                    RETENTION_PRUNED.labels(rule).inc(n)
        total = removed["age"] + removed["count"]
        if total:
            self.log.info("deptcast retention: removed {total} messages ({age} by age, {count} by count) "
                          "in {seconds:.1f} s", total=total, age=removed["age"], count=removed["count"],
                          seconds=self._clock.seconds() - started)
        return total
