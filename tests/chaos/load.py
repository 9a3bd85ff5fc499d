"""Load and bookkeeping for the chaos tests: senders on every interface that record what
happened to each message, followers that resume by position, and the checks every chaos
test makes.

- :class:`WampSender`, :class:`HttpSender`, :class:`LegacySender` send numbered messages at a
  steady pace, reconnecting when their node goes away, and record each outcome: accepted (with
  its envelope), refused (with the error URI and text), or in doubt (the connection went
  while the call was out: the client cannot know, and retries with a new message).
- :class:`Follower` is a user who follows one topic as a robust client does: it shows each
  ``seq`` once and in order; when ``seq`` jumps, or after it reconnects, it asks
  ``deptcast.history(positions={topic: last seq shown})`` for exactly what it missed.
- :func:`check_delivery` compares every follower with the store itself (read directly):
  every stored message shown once, in order, nothing else; every accepted message stored.
- :func:`check_refusals` checks every refusal: a documented ``deptcast.error.*`` URI, a text
  without internals (no host, port, driver or SQL text).
"""

import re
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Set, Tuple

import psycopg
from autobahn.wamp.exception import ApplicationError, TransportLost
from autobahn.wamp.types import CloseDetails
from twisted.internet import defer, reactor, task

from components.core.errors import (INVALID_FRAME, INVALID_TOKEN, NOT_AUTHORIZED, RATE_LIMITED, TOKEN_EXPIRED,
                                    TOO_LARGE, UNAVAILABLE)
from components.core.names import PROC_HISTORY, PROC_SEND
from components.core.settings import is_postgres_url
from tests.support.legacy import connect_legacy, post_send
from tests.support.wamp import connect

#: every error URI the contract documents for clients
DOCUMENTED = {INVALID_FRAME, INVALID_TOKEN, NOT_AUTHORIZED, RATE_LIMITED, TOKEN_EXPIRED, TOO_LARGE, UNAVAILABLE}
#: text that must never reach a client: hosts, ports, drivers, SQL, Python internals
INTERNALS = re.compile(r"psycopg|sqlite|postgres|127\.0\.0\.1|localhost|::1|port \d+|Traceback|Error:|"
                       r"OperationalError|connection to server|SELECT |INSERT |deptcast\.internal", re.I)
#: seconds a client call may take before the test counts it as hung
CALL_TIMEOUT = 30.0


def _sleep(seconds: float) -> defer.Deferred:
    return task.deferLater(reactor, seconds, lambda: None)


@dataclass
class Outcome:
    """What became of one message a sender tried to send."""

    text: str
    issued: float
    answered: float
    #: the envelope when accepted
    envelope: Optional[Dict[str, Any]] = None
    #: the error URI and text when refused
    error: Optional[str] = None
    detail: str = ""
    #: the connection went while the call was out (or the node was down): the sender cannot know
    in_doubt: bool = False

    @property
    def accepted(self) -> bool:
        return self.envelope is not None


@dataclass
class Sender:
    """A client sending numbered messages ``<prefix>-<n>`` to ``to`` every ``interval`` seconds."""

    to: str
    prefix: str
    interval: float = 0.1
    outcomes: List[Outcome] = field(default_factory=list)
    _running: bool = False
    _done: Optional[defer.Deferred] = None

    def start(self) -> "Sender":
        self._running = True
        self._done = defer.ensureDeferred(self._loop())
        return self

    def stop(self) -> defer.Deferred:
        self._running = False
        return self._done

    async def _loop(self) -> None:
        n = 0
        while self._running:
            n += 1
            text = f"{self.prefix}-{n}"
            started = time.monotonic()
            outcome = await self._send_one(text)
            outcome.answered = time.monotonic()
            self.outcomes.append(outcome)
            rest = self.interval - (outcome.answered - started)
            await _sleep(max(rest, 0.01))

    async def _send_one(self, text: str) -> Outcome:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- what happened

    @property
    def accepted(self) -> List[Dict[str, Any]]:
        return [o.envelope for o in self.outcomes if o.accepted]

    @property
    def refused(self) -> List[Outcome]:
        return [o for o in self.outcomes if o.error is not None]

    def first_accepted_after(self, t: float) -> Optional[float]:
        """When the first message issued at or after ``t`` was accepted (monotonic seconds)."""
        for o in self.outcomes:
            if o.issued >= t and o.accepted:
                return o.answered
        return None

    def longest_call(self, since: float = 0.0) -> float:
        return max((o.answered - o.issued for o in self.outcomes if o.issued >= since), default=0.0)


@dataclass
class WampSender(Sender):
    """``deptcast.send`` over WAMP from one session, reconnecting when it drops."""

    url: str = ""
    token: str = ""
    client: Any = None

    async def _client(self):
        while self.client is None or not self.client.is_attached():
            try:
                self.client = await connect(self.url, self.token, timeout=5)
            except Exception:
                self.client = None
                await _sleep(0.2)
        return self.client

    async def _send_one(self, text: str) -> Outcome:
        client = await self._client()
        issued = time.monotonic()
        outcome = Outcome(text, issued, issued)
        try:
            outcome.envelope = await client.call(PROC_SEND, self.to, text).addTimeout(CALL_TIMEOUT, reactor)
        except ApplicationError as e:
            if e.error == CloseDetails.REASON_TRANSPORT_LOST:  # Autobahn's own: the connection went
                outcome.in_doubt, outcome.detail = True, e.error
            else:
                outcome.error, outcome.detail = e.error, str(e.args[0] if e.args else "")
        except (TransportLost, defer.TimeoutError, defer.CancelledError, ConnectionError) as e:
            outcome.in_doubt = True
            outcome.detail = type(e).__name__
            if isinstance(e, (defer.TimeoutError, defer.CancelledError)):
                outcome.error = "hung"  # a call must never hang: check_refusals fails on it
        return outcome

    def stop(self) -> defer.Deferred:
        d = super().stop()

        def close(_):
            if self.client is not None and self.client.is_attached():
                return self.client.close()
        return d.addCallback(close)


@dataclass
class HttpSender(Sender):
    """``POST /api/send``."""

    port: int = 0
    token: str = ""

    async def _send_one(self, text: str) -> Outcome:
        issued = time.monotonic()
        outcome = Outcome(text, issued, issued)
        try:
            status, _, body = await post_send(self.port, {"to": self.to, "message": text},
                                              self.token).addTimeout(CALL_TIMEOUT, reactor)
        except defer.TimeoutError:
            outcome.error, outcome.in_doubt = "hung", True
            return outcome
        except Exception as e:  # the node is down: connection refused or reset
            outcome.in_doubt, outcome.detail = True, type(e).__name__
            return outcome
        if status == 200:
            outcome.envelope = body
        elif isinstance(body, dict) and "error" in body:
            outcome.error, outcome.detail = body["error"], body.get("detail", "")
        else:
            outcome.error, outcome.detail = f"HTTP {status}", str(body)[:200]
        return outcome


@dataclass
class LegacySender(Sender):
    """An old page sending ``{"to", "message"}`` frames. It gets no answer for a frame that is
    sent, only an error frame for one that is refused; so its messages are accounted for by
    text: each stored one must reach every follower, each error frame must be documented."""

    port: int = 0
    key: str = ""
    token: str = ""
    socket: Any = None
    errors: List[Dict[str, str]] = field(default_factory=list)
    disconnects: int = 0

    async def _socket(self):
        while self.socket is None or not self.socket.open_now:
            if self.socket is not None:
                self.errors.extend(self.socket.errors())
                self.disconnects += 1
            try:
                self.socket = await connect_legacy(self.port, self.key, self.token, timeout=5)
            except Exception:
                self.socket = None
                await _sleep(0.2)
        return self.socket

    async def _send_one(self, text: str) -> Outcome:
        sock = await self._socket()
        issued = time.monotonic()
        sock.send_json(self.to, text)
        return Outcome(text, issued, issued, in_doubt=True)

    def all_errors(self) -> List[Dict[str, str]]:
        return self.errors + (self.socket.errors() if self.socket is not None else [])

    def stop(self) -> defer.Deferred:
        d = super().stop()

        def close(_):
            if self.socket is not None:
                self.errors.extend(self.socket.errors())
                sock, self.socket = self.socket, None
                return sock.close()
        return d.addCallback(close)


class Follower:
    """A user following ``topic`` on one node as a robust client does (see the module doc).

    :ivar shown: the envelopes shown to the user, in order (each ``seq`` once)
    :ivar live_ids: the ids received as events, duplicates included
    :ivar reconnects: how often the connection was made again
    :ivar gap_fills: how often a ``seq`` jump sent it to history
    """

    #: seconds a jump in ``seq`` may stay open before the client asks history (an event that
    #: took another way may still come)
    GAP_GRACE = 0.5

    def __init__(self, url: str, token: str, topic: str) -> None:
        self.url = url
        self.token = token
        self.topic = topic
        self.shown: List[Dict[str, Any]] = []
        self.live_ids: List[str] = []
        self.reconnects = 0
        self.gap_fills = 0
        self.errors: List[str] = []
        self.client: Any = None
        self._pending: Dict[int, Dict[str, Any]] = {}
        self._closing = False
        self._gap_timer: Any = None
        self._catching_up = False

    @property
    def last(self) -> int:
        """The highest ``seq`` shown, every one below it shown too."""
        return self.shown[-1]["seq"] if self.shown else 0

    async def start(self) -> "Follower":
        await self._connect()
        await self.catch_up()
        return self

    async def _connect(self) -> None:
        while not self._closing:
            try:
                client = await connect(self.url, self.token, timeout=5)
                await client.subscribe(self._on_event, self.topic)
            except Exception:
                await _sleep(0.2)
                continue
            self.client = client
            client.closed.addCallback(self._on_closed)
            return

    def _take(self, envelope: Dict[str, Any]) -> None:
        seq = envelope["seq"]
        if seq <= self.last or seq in self._pending:
            return  # shown already: each message once
        self._pending[seq] = envelope
        while self.last + 1 in self._pending:
            self.shown.append(self._pending.pop(self.last + 1))

    def _on_event(self, envelope: Dict[str, Any], *args: Any, **kwargs: Any) -> None:
        self.live_ids.append(envelope["id"])
        self._take(envelope)
        if self._pending and (self._gap_timer is None or not self._gap_timer.active()):
            self._gap_timer = reactor.callLater(self.GAP_GRACE, self._fill_gap)

    def _fill_gap(self) -> None:
        if self._pending and self.client is not None and self.client.is_attached():
            self.gap_fills += 1
            defer.ensureDeferred(self.catch_up())

    async def catch_up(self) -> None:
        """Ask history for everything past the last ``seq`` shown, page by page."""
        if self._catching_up:
            return
        self._catching_up = True
        try:
            while self.client is not None and self.client.is_attached():
                try:
                    page = await self.client.call(PROC_HISTORY, positions={self.topic: self.last}, limit=500)
                except ApplicationError as e:
                    # the store may be down: a real client retries later; so do we
                    self.errors.append(e.error)
                    await _sleep(0.5)
                    continue
                except Exception:
                    return  # the connection went: reconnecting catches up again
                for envelope in page:
                    self._take(envelope)
                if not page:
                    return
        finally:
            self._catching_up = False

    def _on_closed(self, _: Any) -> None:
        if self._closing:
            return
        self.client = None

        async def again() -> None:
            await self._connect()
            if not self._closing:
                self.reconnects += 1
                await self.catch_up()
        defer.ensureDeferred(again())

    async def close(self) -> None:
        self._closing = True
        if self._gap_timer is not None and self._gap_timer.active():
            self._gap_timer.cancel()
        if self.client is not None and self.client.is_attached():
            await self.client.close()


# -- the ground truth: the store itself


def stored(db: str, topic: str) -> List[Tuple[str, int, str]]:
    """``(id, seq, message)`` of every message stored on ``topic``, by ``seq``, read directly
    from the database (``db``: an SQLite path or a PostgreSQL URL).

    :rtype: list
    """
    sql = "SELECT id, seq, message FROM messages WHERE topic = {p} ORDER BY seq"
    if is_postgres_url(db):
        with psycopg.connect(db, autocommit=True, connect_timeout=10) as conn:
            rows = conn.execute(sql.format(p="%s"), (topic,)).fetchall()
    else:
        conn = sqlite3.connect(db, timeout=30)
        try:
            rows = conn.execute(sql.format(p="?"), (topic,)).fetchall()
        finally:
            conn.close()
    return [(f"{int(i):016d}", int(s), m) for i, s, m in rows]


async def wait_followers(followers: Iterable[Follower], db: str, topic: str, timeout: float = 30.0) -> List[Tuple]:
    """Wait until every follower shows as much as the store holds on ``topic``; return the rows.

    Followers are not told to catch up: they must get there by themselves (live, by a gap
    fill, or by catching up after a reconnect).
    """
    followers = list(followers)
    deadline = time.monotonic() + timeout
    while True:
        rows = stored(db, topic)
        top = rows[-1][1] if rows else 0
        if all(f.last >= top for f in followers):
            return rows
        if time.monotonic() > deadline:
            behind = {f"{f.url} #{i}": (f.last, top, len(f._pending))
                      for i, f in enumerate(followers) if f.last < top}
            raise AssertionError(f"followers behind the store after {timeout} s "
                                 f"(last shown, stored, pending): {behind}")
        await _sleep(0.1)


def check_delivery(rows: List[Tuple[str, int, str]], followers: Iterable[Follower],
                   senders: Iterable[Sender]) -> None:
    """Nothing accepted lost, nothing duplicated: the store numbers the topic 1..N with unique
    ids and texts, every follower shows exactly those ids in that order, every accepted
    message is stored, and no event reached a follower twice."""
    ids = [r[0] for r in rows]
    assert [r[1] for r in rows] == list(range(1, len(rows) + 1)), "the store's seq has holes or repeats"
    assert len(set(ids)) == len(ids), "an id stored twice"
    texts = [r[2] for r in rows]
    twice = sorted(t for t in set(texts) if texts.count(t) > 1)
    assert not twice, f"a message stored twice: {twice[:5]}"
    stored_ids = set(ids)
    for i, f in enumerate(followers):
        shown = [e["id"] for e in f.shown]
        assert shown == ids, (f"follower {i} ({f.url}) shows {len(shown)} messages, the store holds "
                              f"{len(ids)}; missing {sorted(stored_ids - set(shown))[:5]}, "
                              f"extra {sorted(set(shown) - stored_ids)[:5]}")
        assert len(set(f.live_ids)) == len(f.live_ids), f"follower {i} received an event twice"
        assert set(f.errors) <= {UNAVAILABLE}, f"follower {i}: history refused with {set(f.errors)}"
    for s in senders:
        lost = [e["id"] for e in s.accepted if e["id"] not in stored_ids]
        assert not lost, f"{s.prefix}: accepted but not stored: {lost[:5]}"


def check_refusals(senders: Iterable[Sender], allowed: Set[str] = frozenset({UNAVAILABLE}),
                   in_doubt_allowed: bool = False) -> Dict[str, int]:
    """Every refused call got a documented URI from ``allowed`` and a text without internals;
    no call hung; no call was in doubt unless the node itself went away.

    :returns: refusals per URI
    """
    counts: Dict[str, int] = {}
    for s in senders:
        errors: List[Tuple[str, str]] = [(o.error, o.detail) for o in s.refused]
        if isinstance(s, LegacySender):
            errors += [(e["error"], e["detail"]) for e in s.all_errors()]
        for uri, detail in errors:
            assert uri in DOCUMENTED and uri in allowed, f"{s.prefix}: refused with {uri!r} ({detail!r})"
            assert not INTERNALS.search(detail), f"{s.prefix}: a refusal shows internals: {detail!r}"
            counts[uri] = counts.get(uri, 0) + 1
        if not in_doubt_allowed and not isinstance(s, LegacySender):
            doubts = [o for o in s.outcomes if o.in_doubt]
            assert not doubts, f"{s.prefix}: {len(doubts)} calls lost their connection ({doubts[0].detail})"
    return counts


def legacy_texts_stored(sender: LegacySender, rows: List[Tuple[str, int, str]]) -> int:
    """How many of the legacy sender's frames were stored (each at most once: the store's texts
    are unique, see :func:`check_delivery`)."""
    texts = {o.text for o in sender.outcomes}
    return sum(1 for r in rows if r[2] in texts)


def log_lines(text: str, needle: str) -> List[str]:
    return [line for line in text.splitlines() if needle in line]


_ENTRY_START = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")


def log_entries(text: str) -> List[str]:
    """The node log's entries: a line with a timestamp and the lines that continue it (a
    dict Crossbar prints over several lines is one entry)."""
    entries: List[str] = []
    for line in text.splitlines():
        if _ENTRY_START.match(line) or not entries:
            entries.append(line)
        else:
            entries[-1] += "\n" + line
    return entries
