"""Refusals in the node's log, quiet under floods: a thin Twisted adapter over
:class:`components.core.logsummary.RefusalCounter`.

Each kind of thing the node refuses (sends, history calls, sessions, legacy connections and
frames, HTTP requests) has one :class:`RefusalLog`. The first refusal of each reason in a
spell gets a line of its own at once; the rest are counted and summarised every
:data:`~components.core.logsummary.SUMMARY_INTERVAL` seconds, one line per kind.
"""

from typing import Any, Optional

import txaio
from twisted.python.failure import Failure

from components.core.logsummary import SUMMARY_INTERVAL, RefusalCounter, printable, short_reason

txaio.use_twisted()  # a Twisted module: its txaio loggers are Twisted's

#: the reason an unexpected failure is counted under (its exception type is added)
INTERNAL = "internal_error"


class RefusalLog:
    """Counts and logs the refusals of one kind.

    :param log: the logger the lines go to (the caller's, so they keep its namespace)
    :param prefix: how the lines start, e.g. ``deptcast messages``
    :param one: the thing refused, singular (``send``); ``many``: plural (``sends``)
    :param clock: the reactor, or a ``task.Clock`` in tests
    """

    def __init__(self, log: Any, prefix: str, one: str, many: str, clock: Any = None,
                 interval: float = SUMMARY_INTERVAL) -> None:
        if clock is None:
            from twisted.internet import reactor as clock  # (at the top, the import would install the reactor)
        self._log = log
        self._prefix = prefix
        self._one = one
        self._many = many
        self._clock = clock
        self._counter = RefusalCounter(interval)
        self._timer: Any = None
        self._a = "an" if one[:1].lower() in "aeiou" or one.startswith("HTTP") else "a"

    def refused(self, reason: str, who: Optional[str] = None, detail: str = "") -> None:
        """Count one refusal; log it if it is the first of its reason in a spell.

        :param reason: the error URI
        :param who: the caller (a user key, a host; it is made printable here)
        :param detail: the refusal's readable reason (never a secret: it goes to the log)
        """
        who = printable(who, 130) if who is not None else None
        if self._counter.add(reason, who, self._clock.seconds()):
            self._log.info("{prefix}: refused {a} {one}{by}: {reason}{detail}; further refusals are counted "
                           "and summarised every {interval:.0f} s",
                           prefix=self._prefix, a=self._a, one=self._one, by=f" by {who}" if who else "",
                           reason=short_reason(reason), detail=f" ({printable(detail, 200)})" if detail else "",
                           interval=self._counter.interval)
        self._schedule()

    def failed(self, failure: Failure, who: Optional[str] = None) -> None:
        """Count a request that failed unexpectedly (a bug, or an error nobody foresaw): its
        first failure in a spell is logged with its traceback, the rest are counted."""
        reason = f"{INTERNAL}:{type(failure.value).__name__}"
        who = printable(who, 130) if who is not None else None
        if self._counter.add(reason, who, self._clock.seconds()):
            self._log.failure("{prefix}: {a} {one}{by} failed; further failures are counted and summarised every "
                              "{interval:.0f} s", failure=failure, prefix=self._prefix, a=self._a, one=self._one,
                              by=f" by {who}" if who else "", interval=self._counter.interval)
        self._schedule()

    def _schedule(self) -> None:
        due = self._counter.due
        if due is not None and (self._timer is None or not self._timer.active()):
            self._timer = self._clock.callLater(max(0.0, due - self._clock.seconds()), self._flush)

    def _flush(self) -> None:
        self._timer = None
        summary = self._counter.flush(self._clock.seconds())
        if summary is not None:
            self._log.info("{prefix}: {summary}", prefix=self._prefix, summary=summary.line(self._one, self._many))
        self._schedule()
