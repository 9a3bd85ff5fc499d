"""A session lives no longer than its right to listen: the token's ``exp``, and revocations.

:class:`Revocations` is what this node knows of the cluster's revocations (the store holds
them; :class:`RevocationPoller` reads new ones about every :data:`POLL_INTERVAL` seconds, all of
them at start, so a node that was down when a user was revoked learns it when it starts).

:class:`SessionLives` holds every signed-in session of this router worker, WAMP sessions and
legacy sockets alike, with the life of its token. Each has an ``end(reason)`` callable, given
by its adapter (:mod:`components.wamp.sessionlife` sends a GOODBYE, :mod:`components.edge.legacy`
closes the socket with 4001 or 4003). It ends a session at its token's ``exp`` unless a newer
token was handed over (:meth:`SessionLives.refreshed`), and ends the sessions of a revoked
user whose token was issued at or before the revocation's second (a session that signed in
with a token issued after it stays). Open-mode legacy sockets have no token: no expiry, and a
revocation of their user ends them.
"""

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Hashable, List, Optional, Set, Tuple

import txaio
from twisted.internet import defer, task

from components.core.metrics import SESSIONS_ENDED
from components.core.errors import INVALID_FRAME, INVALID_TOKEN, UNAVAILABLE, Refused
from components.core.names import CLOSE_REVOKED, CLOSE_TOKEN_EXPIRED, NAME_RULE, parse_user_key
from components.core.tokens import Grant, read_token
from components.store.revocations import LOOKBACK
from components.store.threaded import StoreUnavailable

txaio.use_twisted()  # a Twisted module: its txaio loggers are Twisted's

#: seconds between two reads of new revocations from the store
POLL_INTERVAL = 0.5
#: seconds between two prunes of revocations older than the longest token lifetime
PRUNE_INTERVAL = 600.0
#: the refusal's detail for a revoked user's token (clients look for the word "revoked")
REVOKED_DETAIL = "revoked: an administrator revoked this user's access; ask the application for a new sign-in"

Key = Tuple[str, str]


class Revocations:
    """The revocations this node knows: (dept, user) to the second of the latest one."""

    def __init__(self) -> None:
        self._at: Dict[Key, int] = {}

    def __len__(self) -> int:
        return len(self._at)

    def add(self, dept: str, user: str, at: int) -> bool:
        """Note a revocation; answer whether it is newer than what was known of that user.

        :rtype: bool
        """
        key = (dept, user)
        if self._at.get(key, -1) >= at:
            return False
        self._at[key] = at
        return True

    def covers(self, dept: str, user: str, iat: Optional[int]) -> bool:
        """Whether a token of ``dept``/``user`` issued at ``iat`` (``None``: no ``iat``) is revoked.

        :rtype: bool
        """
        at = self._at.get((dept, user))
        return at is not None and (iat is None or iat <= at)

    def forget_before(self, cutoff: int) -> None:
        """Drop the revocations older than the second ``cutoff`` (no token issued before it is alive)."""
        for key in [k for k, at in self._at.items() if at < cutoff]:
            del self._at[key]


@dataclass
class _Life:
    dept: str
    user: str
    iat: Optional[int]
    exp: Optional[int]
    end: Callable[[str], Any]
    timer: Any = None


@dataclass
class SessionLives:
    """The signed-in sessions of this worker and their tokens' lives; see the module.

    :param clock: a Twisted reactor (``callLater``, ``seconds``)
    :param now: the wall clock, seconds since the epoch (token times are wall-clock times)
    """

    clock: Any
    revocations: Revocations = field(default_factory=Revocations)
    now: Callable[[], float] = time.time
    log: Any = field(default_factory=txaio.make_logger)
    _lives: Dict[Hashable, _Life] = field(default_factory=dict)
    _by_user: Dict[Key, Set[Hashable]] = field(default_factory=dict)
    #: sessions ended, by reason (for /metrics and the tests)
    ended: Dict[str, int] = field(default_factory=lambda: {CLOSE_TOKEN_EXPIRED: 0, CLOSE_REVOKED: 0})
    #: whether the revocations in force were read from the store (a starting node's sign-ins
    #: wait for it a bounded time: :meth:`when_loaded`)
    loaded: bool = False
    _waiters: List[defer.Deferred] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self._lives)

    def mark_loaded(self) -> None:
        """The revocations in force are known: sign-ins that waited go on."""
        self.loaded = True
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            if not d.called:
                d.callback(True)

    def when_loaded(self, timeout: float) -> defer.Deferred:
        """Fire with ``True`` once the revocations are loaded, or ``False`` after ``timeout``
        seconds (the store is down: sign-ins go on, and a revoked user that got in is ended
        when the revocations arrive)."""
        if self.loaded:
            return defer.succeed(True)
        d: defer.Deferred = defer.Deferred()
        self._waiters.append(d)
        def give_up() -> None:
            if not d.called:
                d.callback(False)

        def done(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            return result
        timer = self.clock.callLater(timeout, give_up)
        return d.addBoth(done)

    # -- tokens

    def grant(self, secret: str, token: object, authid: Optional[str] = None, max_ttl: Optional[int] = None) -> Grant:
        """Verify ``token`` (:func:`~components.core.tokens.read_token`) and refuse a revoked user's.

        :raises Refused: ``token_expired``, or ``invalid_token`` (the detail starts with
            "revoked" for a revoked user's token)
        :rtype: Grant
        """
        grant = read_token(secret, token, authid, **({"max_ttl": max_ttl} if max_ttl is not None else {}),
                           now=self.now())
        self.check(grant)
        return grant

    def check(self, grant: Grant) -> None:
        """:raises Refused: ``invalid_token`` ("revoked") if ``grant``'s user was revoked since it was issued."""
        identity = grant.identity
        if self.revocations.covers(identity.dept, identity.user, grant.iat):
            raise Refused(INVALID_TOKEN, REVOKED_DETAIL)

    # -- sessions

    def joined(self, handle: Hashable, dept: str, user: str, iat: Optional[int], exp: Optional[int],
               end: Callable[[str], Any]) -> None:
        """A session signed in (``exp`` ``None``: it does not expire, open mode). A session
        whose user was revoked since its token was issued ends at once."""
        self.left(handle)
        life = _Life(dept, user, iat, exp, end)
        self._lives[handle] = life
        self._by_user.setdefault((dept, user), set()).add(handle)
        if self.revocations.covers(dept, user, iat):
            self._end(handle, CLOSE_REVOKED)
            return
        self._schedule(handle, life)

    def known(self, handle: Hashable) -> bool:
        return handle in self._lives

    def exp_of(self, handle: Hashable) -> Optional[int]:
        life = self._lives.get(handle)
        return life.exp if life is not None else None

    def refreshed(self, handle: Hashable, grant: Grant) -> None:
        """``handle`` handed over a newer token (checked by the caller): it lives until its ``exp``."""
        life = self._lives.get(handle)
        if life is None:
            return
        life.iat, life.exp = grant.iat, grant.exp
        self._schedule(handle, life)

    def left(self, handle: Hashable) -> None:
        """A session ended (whatever the reason); unknown handles are ignored."""
        life = self._lives.pop(handle, None)
        if life is None:
            return
        if life.timer is not None and life.timer.active():
            life.timer.cancel()
        handles = self._by_user.get((life.dept, life.user))
        if handles is not None:
            handles.discard(handle)
            if not handles:
                del self._by_user[(life.dept, life.user)]

    def revoke(self, dept: str, user: str, at: int) -> int:
        """Note a revocation and end the user's sessions whose token was issued at or before
        ``at`` (and its open-mode sockets); answer how many ended.

        :rtype: int
        """
        self.revocations.add(dept, user, at)
        doomed = [h for h in self._by_user.get((dept, user), ()) if self._lives[h].iat is None
                  or self._lives[h].iat <= at]  # type: ignore[operator]  # None is tested first
        for handle in doomed:
            self._end(handle, CLOSE_REVOKED)
        return len(doomed)

    @defer.inlineCallbacks
    def record_revocation(self, store: Any, user_key: Any):
        """Revoke ``user_key`` (``<dept>_<user>``): stored in ``store`` (a
        :class:`~components.store.threaded.ThreadedStore`), then applied here at once (the other
        nodes read it from the store). Fires with ``{"user_key", "at"}``.

        :raises Refused: ``invalid_frame`` for something else than a user key, ``unavailable``
            while the store cannot record it
        """
        parsed = parse_user_key(user_key) if isinstance(user_key, str) else None
        if parsed is None:
            raise Refused(INVALID_FRAME, f"user_key must be <dept>_<user> ({NAME_RULE})")
        dept, user = parsed
        at = int(self.now())
        try:
            yield store.revoke(dept, user, at)
        except StoreUnavailable:
            raise Refused(UNAVAILABLE, "the revocation could not be stored; retry shortly") from None
        ended = self.revoke(dept, user, at)
        self.log.info("deptcast sessions: {key} revoked: ended {n} session(s) here", key=user_key, n=ended)
        return {"user_key": user_key, "at": at}

    def _schedule(self, handle: Hashable, life: _Life) -> None:
        if life.timer is not None and life.timer.active():
            life.timer.cancel()
        life.timer = None
        if life.exp is not None:
            life.timer = self.clock.callLater(max(0.0, life.exp - self.now()), self._expire, handle)

    def _expire(self, handle: Hashable) -> None:
        life = self._lives.get(handle)
        if life is not None and life.exp is not None and life.exp <= self.now() + 0.001:
            self._end(handle, CLOSE_TOKEN_EXPIRED)
        elif life is not None:
            self._schedule(handle, life)  # the clock fired early: wait for the rest

    def _end(self, handle: Hashable, reason: str) -> None:
        life = self._lives.get(handle)
        if life is None:
            return
        self.left(handle)
        self.ended[reason] = self.ended.get(reason, 0) + 1
        SESSIONS_ENDED.labels(reason.rsplit(".", 1)[-1]).inc()
        try:
            life.end(reason)
        except Exception:
            self.log.failure("deptcast sessions: ending a session failed")


class RevocationPoller:
    """Reads the store's revocations into a :class:`SessionLives`: all of them at start, then
    the new ones every :data:`POLL_INTERVAL` seconds, and prunes the old ones.

    :param store: a :class:`~components.store.threaded.ThreadedStore`
    :param max_ttl: the longest token lifetime (``DEPTCAST_MAX_TOKEN_TTL``): older revocations go
    """

    log = txaio.make_logger()

    def __init__(self, lives: SessionLives, store: Any, max_ttl: int, clock: Any,
                 interval: float = POLL_INTERVAL) -> None:
        self._lives, self._store, self._max_ttl, self._clock = lives, store, max_ttl, clock
        self._after = 0
        self._pruned_at = 0.0
        self.loaded = False
        self._loop = task.LoopingCall(self.poll)
        self._loop.clock = clock
        self._interval = interval

    def start(self) -> None:
        self._loop.start(self._interval, now=True).addErrback(
            lambda f: self.log.failure("deptcast sessions: the revocation poll stopped", failure=f))

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    @defer.inlineCallbacks
    def poll(self):
        now = int(self._lives.now())
        try:
            rows: List[Tuple[int, str, str, int]] = yield self._store.revocations_since(self._after, now - LOOKBACK)
        except StoreUnavailable:
            return  # the store logs it; the next poll asks again
        except Exception:
            self.log.failure("deptcast sessions: reading revocations failed")
            return
        cutoff = now - self._max_ttl
        for row_id, dept, user, at in rows:
            self._after = max(self._after, row_id)
            if at >= cutoff and not self._lives.revocations.covers(dept, user, at):
                ended = self._lives.revoke(dept, user, at)
                if ended:
                    self.log.info("deptcast sessions: {key} revoked: ended {n} session(s) here",
                                  key=f"{dept}_{user}", n=ended)
        if not self.loaded:
            self.loaded = True
            self._lives.mark_loaded()
            self.log.info("deptcast sessions: {n} revocation(s) in force", n=len(self._lives.revocations))
        if self._lives.now() - self._pruned_at >= PRUNE_INTERVAL:
            self._pruned_at = self._lives.now()
            self._lives.revocations.forget_before(cutoff)
            try:
                yield self._store.prune_revocations(cutoff)
            except Exception:
                pass  # tried again at the next prune
