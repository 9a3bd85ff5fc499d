"""Receipts: what the clients acknowledge (``deptcast.ack``), what the node wrote to legacy
sockets, the counts and pages of who (``deptcast.receipts``, ``deptcast.recipients``) and
the sender's live counts.

Nothing here is on the delivery path. Acknowledgements and legacy writes go into a bounded
buffer in memory (:class:`ReceiptBuffer`: a dict entry per acknowledged id, one list entry
per legacy event however many sockets it was written to, holding the topic's tuple of
readers that the fan-out keeps between joins and leaves); :class:`ReceiptService` writes
what waits every :data:`FLUSH_EVERY` seconds, in chunks of one statement each, after
dropping what the caller cannot be in the audience of (the notices' senders and targets
are read once and kept in a small cache). A full buffer drops receipts (counted) rather than
grow: receipts may lag or miss, delivery never waits for them.

Each notice that got receipts is recounted at most every :data:`LIVE_EVERY` seconds on
this node and its counts published on its sender's ``deptcast.receipts.<dept>_<user>``, if
anyone follows that topic (a client of this node, or a peer's link for one of its own).
Counting an ``All`` notice reads the roster's size; nothing per acknowledgement does.
"""

import time
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from twisted.internet import defer
import txaio

from components.core import names
from components.core.history import format_id
from components.core.receipts import (Notice, counts_of, id_number, in_audience, may_ask, next_cursor,
                                      not_yours, parse_ack, parse_notice_id, parse_recipients)
from components.core.errors import RATE_LIMITED, Refused
from components.core.ratelimit import RateLimiter
from components.core.tokens import Identity
from components.service.roster import StoreGetter, store_answer
from components.store.threaded import StoreUnavailable

txaio.use_twisted()  # a Twisted module: its txaio loggers are Twisted's

#: seconds between two bulk writes of receipts
FLUSH_EVERY = 1.0
#: seconds between two live updates of one notice's counts (at most about two a second)
LIVE_EVERY = 0.5
#: notices recounted per live round at most (the others wait for the next round)
LIVE_BATCH = 200
#: receipts waiting in memory at most (acknowledged ids plus users written to); more are dropped
BUFFER_MAX = 500_000
#: rows per statement of a bulk write
FLUSH_CHUNK = 5000
#: notices whose sender and target are kept in memory
NOTICE_CACHE = 20_000
#: seconds between two log lines about dropped receipts
LOG_EVERY = 10.0

#: receipt rows: (msg_id, state, dept, user, ms)
Row = Tuple[int, str, str, str, int]


class ReceiptBuffer:
    """Receipts waiting to be written (see the module).

    :param now: wall-clock seconds
    :param limit: receipts that may wait at most
    """

    def __init__(self, now: Callable[[], float] = time.time, limit: int = BUFFER_MAX) -> None:
        self._now = now
        self._limit = limit
        self._acks: Dict[Tuple[int, str, str, str], int] = {}
        self._written: List[Tuple[Any, Sequence[Tuple[str, str]], int]] = []
        self._written_users = 0
        #: receipts not recorded because the buffer was full
        self.dropped = 0
        #: legacy writes recorded, acknowledgements taken (since start)
        self.legacy_written = 0
        self.acked = 0

    def __len__(self) -> int:
        return len(self._acks) + self._written_users

    def acknowledged(self, ids: List[int], state: str, dept: str, user: str) -> None:
        """A client said ``state`` for ``ids`` (the first time sets ``at``)."""
        ms = int(self._now() * 1000)
        for msg_id in ids:
            key = (msg_id, state, dept, user)
            if key in self._acks:
                continue
            if len(self) >= self._limit:
                self.dropped += 1
                continue
            self._acks[key] = ms
            self.acked += 1

    def written(self, envelope_id: Any, users: Sequence[Tuple[str, str]]) -> None:
        """The legacy fan-out wrote one event to the sockets of ``users`` (one call per event,
        ``users`` kept as given: the rows are made at the next flush, not on the delivery path)."""
        if len(self) + len(users) > self._limit:
            self.dropped += len(users)
            return
        self._written.append((envelope_id, users, int(self._now() * 1000)))
        self._written_users += len(users)
        self.legacy_written += len(users)

    def take(self) -> List[Row]:
        """Everything waiting, as rows (repeats folded, the first ``at`` kept); the buffer is empty after."""
        acks, self._acks = self._acks, {}
        written, self._written, self._written_users = self._written, [], 0
        rows = [(m, s, d, u, ms) for (m, s, d, u), ms in acks.items()]
        delivered = names.DELIVERED
        for envelope_id, users, ms in written:
            msg_id = id_number(envelope_id)
            if msg_id is not None:
                # a user with two sockets is two rows: the store keeps the first
                rows += [(msg_id, delivered, dept, user, ms) for dept, user in users]
        return rows

    def put_back(self, rows: List[Row]) -> None:
        """Rows a write could not take wait for the next one (within the bound)."""
        for m, s, d, u, ms in rows:
            key = (m, s, d, u)
            if key in self._acks:
                continue
            if len(self) >= self._limit:
                self.dropped += 1
                continue
            self._acks[key] = ms


class ReceiptService:
    """Writes receipts in bulk and answers the receipts procedures.

    :param store: fires with the node's store when it is ready
    :param publish: ``publish(topic, counts)``: a live update to a sender
    """

    log = txaio.make_logger()

    def __init__(self, store: StoreGetter, buffer: ReceiptBuffer,
                 publish: Callable[[str, Dict[str, Any]], Any],
                 followed: Optional[Callable[[str], defer.Deferred]] = None,
                 questions: Optional[RateLimiter] = None, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        #: how often a user may ask (receipts and recipients read the store: an All notice's
        #: counts read the roster's size); ``None``: no limit
        self._questions = questions
        self._monotonic = monotonic
        self.buffer = buffer
        self._publish = publish
        self._followed = followed
        self._notices: "OrderedDict[int, Notice]" = OrderedDict()
        self._dirty: "OrderedDict[int, None]" = OrderedDict()
        self._flushing = False
        self._updating = False
        self._dropped_logged = 0
        self._dropped_at = float("-inf")
        #: receipts written, and those dropped as not in the audience (since start)
        self.written = 0
        self.ignored = 0

    # -- the notices' senders and targets, cached

    @defer.inlineCallbacks
    def _lookup(self, store: Any, ids: List[int]):
        """``{id: Notice}`` of the stored notices among ``ids``."""
        found: Dict[int, Notice] = {}
        missing = []
        for msg_id in ids:
            notice = self._notices.get(msg_id)
            if notice is None:
                missing.append(msg_id)
            else:
                self._notices.move_to_end(msg_id)
                found[msg_id] = notice
        if missing:
            for notice in (yield store.notices(missing)):
                found[notice.id] = notice
                self._notices[notice.id] = notice
            while len(self._notices) > NOTICE_CACHE:
                self._notices.popitem(last=False)
        return found

    # -- writing

    def ack(self, identity: Identity, ids: Any, state: Any) -> None:
        """``deptcast.ack(ids, state)``: taken into the buffer (checked when written)."""
        numbers, state = parse_ack(ids, state)
        if numbers:
            self.buffer.acknowledged(numbers, state, identity.dept, identity.user)

    @defer.inlineCallbacks
    def flush(self):
        """Write what waits: rows of notices that are stored and whose audience the user can
        be in, in chunks of one statement each; what the store does not take waits."""
        self._log_dropped()
        if self._flushing or not len(self.buffer):
            return 0
        self._flushing = True
        rows = self.buffer.take()
        done = 0
        try:
            store = yield self._store()
            notices = yield self._lookup(store, sorted({r[0] for r in rows}))
            keep = [r for r in rows if r[0] in notices and in_audience(notices[r[0]], r[2], r[3])]
            self.ignored += len(rows) - len(keep)
            rows = keep
            for i in range(0, len(rows), FLUSH_CHUNK):
                yield store.add_receipts(rows[i:i + FLUSH_CHUNK])
                done += len(rows[i:i + FLUSH_CHUNK])
                for r in rows[i:i + FLUSH_CHUNK]:
                    self._dirty[r[0]] = None
            self.written += done
        except (Refused, StoreUnavailable):
            self.buffer.put_back(rows[done:])
        except Exception:
            self.buffer.put_back(rows[done:])
            self.log.failure("deptcast receipts: could not record receipts")
        finally:
            self._flushing = False
        return done

    def _log_dropped(self) -> None:
        """One line per :data:`LOG_EVERY` seconds at most while receipts are dropped."""
        dropped, now = self.buffer.dropped, time.monotonic()
        if dropped > self._dropped_logged and now - self._dropped_at >= LOG_EVERY:
            self.log.warn("deptcast receipts: {n} receipts dropped (more than {limit} waited to be written)",
                          n=dropped - self._dropped_logged, limit=BUFFER_MAX)
            self._dropped_logged, self._dropped_at = dropped, now

    @defer.inlineCallbacks
    def update_live(self):
        """Recount the notices that got receipts since the last round (at most
        :data:`LIVE_BATCH`) and publish each one's counts to its sender."""
        if self._updating or not self._dirty:
            return 0
        self._updating = True
        sent = 0
        try:
            store = yield self._store()
            while self._dirty and sent < LIVE_BATCH:
                msg_id, _ = self._dirty.popitem(last=False)
                notice = self._notices.get(msg_id)
                if notice is None:
                    continue
                topic = names.TOPIC_RECEIPTS + notice.sender_key
                if self._followed is not None and not (yield self._followed(topic)):
                    continue  # nobody follows the sender's counts: nothing to count
                audience, seen, delivered = yield store.receipt_counts(notice)
                counts = counts_of(format_id(msg_id), audience, seen, delivered)
                yield defer.maybeDeferred(self._publish, topic, counts)
                sent += 1
        except (Refused, StoreUnavailable):
            pass  # the next receipt of the notice tries again
        except Exception:
            self.log.failure("deptcast receipts: could not publish live counts")
        finally:
            self._updating = False
        return sent

    # -- asking

    @defer.inlineCallbacks
    def _notice_for(self, identity: Optional[Identity], is_admin: bool, envelope_id: Any):
        number = parse_notice_id(envelope_id)
        who = identity.key if identity is not None else "admin"
        if self._questions is not None and not self._questions.allow(who, self._monotonic()):
            raise Refused(RATE_LIMITED, "too many questions about receipts in a burst; slow down", retry_after=1)
        store = yield self._store()
        found = yield store_answer(self._lookup(store, [number]))
        notice = found.get(number)
        if notice is None or not (is_admin or (identity is not None and may_ask(identity, notice))):
            raise not_yours(envelope_id)
        return store, notice

    @defer.inlineCallbacks
    def receipts(self, identity: Optional[Identity], is_admin: bool, envelope_id: Any):
        """``deptcast.receipts(id)``: ``{"id", "audience", "seen", "delivered", "pending"}``."""
        store, notice = yield self._notice_for(identity, is_admin, envelope_id)
        audience, seen, delivered = yield store_answer(store.receipt_counts(notice))
        return counts_of(format_id(notice.id), audience, seen, delivered)

    @defer.inlineCallbacks
    def recipients(self, identity: Optional[Identity], is_admin: bool, envelope_id: Any, state: Any,
                   after: Any, limit: Any):
        """``deptcast.recipients(id, state, after, limit)``: ``{"users": [{"dept", "user", "at"}], "next"}``."""
        state, cursor, limit = parse_recipients(state, after, limit)
        store, notice = yield self._notice_for(identity, is_admin, envelope_id)
        rows = yield store_answer(store.recipients(notice, state, cursor, limit))
        users = [{"dept": d, "user": u, "at": at} if at is not None else {"dept": d, "user": u} for d, u, at in rows]
        return {"users": users, "next": next_cursor(rows, limit)}

    def stats(self) -> Dict[str, int]:
        """What the receipts did since start (for metrics and the benchmark)."""
        return {"waiting": len(self.buffer), "dropped": self.buffer.dropped, "written": self.written,
                "ignored": self.ignored, "legacy_written": self.buffer.legacy_written, "acked": self.buffer.acked}
