"""Refusals counted and summarised, so that a flood leaves a few useful log lines instead of
one per refused request (pure logic: the caller passes the time and writes the lines).

A *spell* of refusals of one kind (sends, history calls, sessions, ...) starts with the first
refusal after a quiet time. The first refusal of each reason in a spell deserves a line of its
own, at once: it says what happened and why. Everything after it is counted in windows of
``interval`` seconds, and each window that counted something the log has not shown yet ends
with one summary line::

    refused 1,712 sends in the last 10 s: 1,700 rate_limited, 12 invalid_frame; most by cardio_mallory (1,700)

Windows follow one another while refusals keep coming; a window that counted none ends the
spell, silently. So a flood writes one line per reason when it starts and one line per
window while it lasts, however fast it is.
"""

from collections import Counter
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

#: seconds between two summary lines of one kind
SUMMARY_INTERVAL = 10.0
#: the contract's error URI prefix, left out of summaries
ERROR_PREFIX = "deptcast.error."
#: what the callers' distinct ``who`` values beyond ``max_who`` are counted as
OTHERS = "others"


def short_reason(reason: str) -> str:
    """``deptcast.error.rate_limited`` -> ``rate_limited``; other text unchanged.

    :rtype: str
    """
    return reason[len(ERROR_PREFIX):] if reason.startswith(ERROR_PREFIX) else reason


def printable(text: object, limit: int = 80) -> str:
    """``text`` fit for a log line: cut to ``limit`` characters, everything but printable
    ASCII replaced by ``?`` (a client chose it: it must not forge or break lines).

    :rtype: str
    """
    value = str(text)
    cut = value[:limit]
    cleaned = "".join(c if " " <= c <= "~" else "?" for c in cut)
    return cleaned + ("..." if len(value) > limit else "")


def host_of(peer: Optional[str]) -> str:
    """The host of a transport peer as Autobahn and Crossbar write it (``tcp4:127.0.0.1:5123``,
    ``tcp6:::1:5123``, ``unix``): the port changes with each connection, the host is who.

    :rtype: str
    """
    if not peer:
        return "?"
    kind, _, rest = peer.partition(":")
    if kind in ("tcp4", "tcp6") and rest:
        return printable(rest.rsplit(":", 1)[0], 64)
    return printable(peer, 64)


def _n(count: int) -> str:
    return f"{count:,}"


@dataclass(frozen=True)
class Summary:
    """What one window counted.

    :ivar total: refusals in the window (those logged at once included)
    :ivar seconds: the window's length
    :ivar reasons: ``(reason, count)``, most first
    :ivar top: the callers refused most, ``(who, count)``, most first
    """

    total: int
    seconds: float
    reasons: Tuple[Tuple[str, int], ...]
    top: Tuple[Tuple[str, int], ...]

    def line(self, one: str, many: str) -> str:
        """The summary line, e.g. ``refused 1,712 sends in the last 10 s: 1,700 rate_limited,
        12 invalid_frame; most by cardio_mallory (1,700)``.

        :param one: the thing refused, singular (``send``); ``many``: plural (``sends``)
        :rtype: str
        """
        noun = one if self.total == 1 else many
        reasons = ", ".join(f"{_n(c)} {r}" for r, c in self.reasons)
        text = f"refused {_n(self.total)} {noun} in the last {self.seconds:.0f} s: {reasons}"
        if self.top:
            text += "; most by " + ", ".join(f"{w} ({_n(c)})" for w, c in self.top)
        return text


class RefusalCounter:
    """Counts the refusals of one kind and decides which ones get a line of their own.

    :param interval: seconds per window
    :param top: how many of the most refused callers a summary names
    :param max_who: distinct callers counted per window (more are counted as ``others``: a
        flood from many addresses must not grow memory without bound)
    """

    def __init__(self, interval: float = SUMMARY_INTERVAL, top: int = 3, max_who: int = 1000) -> None:
        self.interval = interval
        self._top = top
        self._max_who = max_who
        self._window_start: Optional[float] = None
        self._reasons: Counter = Counter()
        self._who: Counter = Counter()
        self._total = 0
        #: refusals of this window already logged on their own
        self._shown = 0
        #: reasons that had their line of their own in this spell
        self._seen_in_spell: Dict[str, bool] = {}

    @property
    def due(self) -> Optional[float]:
        """When the current window ends (call :meth:`flush` then); ``None`` while quiet.

        :rtype: float or None
        """
        return None if self._window_start is None else self._window_start + self.interval

    def add(self, reason: str, who: Optional[str], now: float) -> bool:
        """Count one refusal at time ``now``.

        :param reason: why (an error URI or a short word); summaries leave out ``deptcast.error.``
        :param who: the caller refused (a user key, a host), for the summary's "most by"
        :returns: whether this refusal gets a line of its own now (the first of its reason in
            the spell); if it opens a spell the caller must call :meth:`flush` at :attr:`due`
        :rtype: bool
        """
        reason = short_reason(reason)
        if self._window_start is None:
            self._window_start = now
        self._total += 1
        self._reasons[reason] += 1
        if who is not None:
            if who in self._who or len(self._who) < self._max_who:
                self._who[who] += 1
            else:
                self._who[OTHERS] += 1
        if reason in self._seen_in_spell:
            return False
        self._seen_in_spell[reason] = True
        self._shown += 1
        return True

    def flush(self, now: float) -> Optional[Summary]:
        """End the current window at ``now``.

        :returns: its summary if it counted refusals that had no line of their own, else
            ``None``; a window that counted any opens the next (call again at :attr:`due`), one
            that counted none ends the spell
        :rtype: Summary or None
        """
        if self._window_start is None:
            return None
        summary = None
        if self._total > self._shown:
            summary = Summary(total=self._total, seconds=max(0.0, now - self._window_start),
                              reasons=tuple(self._reasons.most_common()),
                              top=tuple([(w, c) for w, c in self._who.most_common() if w != OTHERS][:self._top]))
        if self._total == 0:
            self._window_start = None
            self._seen_in_spell.clear()
        else:
            self._window_start = now
        self._reasons.clear()
        self._who.clear()
        self._total = 0
        self._shown = 0
        return summary
