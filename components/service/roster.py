"""The roster: who is in the audiences of receipts. Members who signed in (WAMP sessions of
the ``member`` role, token-checked legacy sockets), plus those an operator imported, minus
those an operator removed.

Sign-ins are recorded in memory (:class:`SignIns`, one entry per user however often it
connects) and written in bulk every :data:`FLUSH_EVERY` seconds by :class:`RosterService`: a
reconnect storm of thousands of sessions is one statement, not a write per connect.
"""

import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from twisted.internet import defer
import txaio

from components.core import names
from components.core.errors import NOT_AUTHORIZED, UNAVAILABLE, Refused
from components.core.receipts import may_read_roster, parse_dept, parse_import, parse_member_key
from components.core.tokens import Identity
from components.store.threaded import StoreUnavailable

txaio.use_twisted()  # a Twisted module: its txaio loggers are Twisted's

#: seconds between two bulk writes of sign-ins
FLUSH_EVERY = 2.0
#: users whose sign-in may wait in memory at most (more are counted as dropped until a write)
SIGNINS_MAX = 200_000
#: rows per statement of a bulk write
FLUSH_CHUNK = 5000

#: what a caller hears while the store is not there
STORE_DOWN = "the store is not answering; retry in a few seconds"

#: fires with the node's store (a ThreadedStore), or fails with ``Refused(unavailable)``
StoreGetter = Callable[[], defer.Deferred]


class SignIns:
    """Members' sign-ins waiting to be written: ``(dept, user) -> ms of the latest``.

    :param now: wall-clock seconds
    """

    def __init__(self, now: Callable[[], float] = time.time, limit: int = SIGNINS_MAX) -> None:
        self._now = now
        self._limit = limit
        self._waiting: Dict[Tuple[str, str], int] = {}
        #: sign-ins not recorded because too many waited
        self.dropped = 0

    def signed_in(self, dept: str, user: str) -> None:
        """A member signed in (cheap: a dict entry)."""
        key = (dept, user)
        if key not in self._waiting and len(self._waiting) >= self._limit:
            self.dropped += 1
            return
        self._waiting[key] = int(self._now() * 1000)

    def take(self) -> List[Tuple[str, str, int]]:
        """Everything waiting, now removed from the buffer."""
        waiting, self._waiting = self._waiting, {}
        return [(dept, user, ms) for (dept, user), ms in waiting.items()]

    def put_back(self, rows: List[Tuple[str, str, int]]) -> None:
        """Rows a write could not take: they wait for the next (newer sign-ins win)."""
        for dept, user, ms in rows:
            key = (dept, user)
            if key in self._waiting:
                continue
            if len(self._waiting) >= self._limit:
                self.dropped += 1
                continue
            self._waiting[key] = ms

    def __len__(self) -> int:
        return len(self._waiting)


class RosterService:
    """Writes sign-ins in bulk and answers the roster's procedures.

    :param store: fires with the node's store when it is ready
    """

    log = txaio.make_logger()

    def __init__(self, store: StoreGetter, signins: SignIns, now: Callable[[], float] = time.time) -> None:
        self._store = store
        self.signins = signins
        self._now = now
        self._flushing = False

    @defer.inlineCallbacks
    def flush(self):
        """Write the sign-ins that wait (in chunks of :data:`FLUSH_CHUNK`, each one statement);
        those the store does not take wait for the next flush."""
        if self._flushing or not len(self.signins):
            return 0
        self._flushing = True
        rows = self.signins.take()
        written = 0
        try:
            store = yield self._store()
            for i in range(0, len(rows), FLUSH_CHUNK):
                yield store.roster_touch(rows[i:i + FLUSH_CHUNK])
                written += len(rows[i:i + FLUSH_CHUNK])
        except (Refused, StoreUnavailable):
            self.signins.put_back(rows[written:])
        except Exception:
            self.signins.put_back(rows[written:])
            self.log.failure("deptcast roster: could not record sign-ins")
        finally:
            self._flushing = False
        return written

    @defer.inlineCallbacks
    def roster(self, identity: Optional[Identity], is_admin: bool, dept: Any):
        """``deptcast.roster(dept)``: ``{"dept", "users": [{"user", "first_seen", "last_seen", "source"}]}``."""
        dept = parse_dept(dept)
        if not is_admin and (identity is None or not may_read_roster(identity, dept)):
            raise Refused(NOT_AUTHORIZED, "members may read their own department's roster only")
        store = yield self._store()
        rows = yield store_answer(store.roster(dept))
        return {"dept": dept, "users": [{"user": u, "first_seen": first, "last_seen": last, "source": source}
                                        for u, first, last, source in rows]}

    @defer.inlineCallbacks
    def import_rows(self, rows: Any):
        """``deptcast.admin.roster_import(rows)``: ``{"added", "known"}`` (admins only: the router checks)."""
        pairs = parse_import(rows)
        store = yield self._store()
        added, known = yield store_answer(store.roster_import(pairs, int(self._now() * 1000)))
        self.log.info("deptcast roster: {n} rows imported ({added} new)", n=len(pairs), added=added)
        return {"added": added, "known": known}

    @defer.inlineCallbacks
    def remove(self, key: Any):
        """``deptcast.admin.roster_remove(user_key)``: ``{"removed": bool}``."""
        dept, user = parse_member_key(key)
        store = yield self._store()
        removed = yield store_answer(store.roster_remove(dept, user))
        if removed:
            self.log.info("deptcast roster: {who} removed", who=names.user_key(dept, user))
        return {"removed": bool(removed)}


@defer.inlineCallbacks
def store_answer(d: defer.Deferred):
    """A store call's answer; a store that is down is ``unavailable``."""
    try:
        answer = yield d
    except StoreUnavailable:
        raise Refused(UNAVAILABLE, STORE_DOWN, retry_after=2) from None
    return answer
