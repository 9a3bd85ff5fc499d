"""Unit tests of components.service.sessionlife: expiry, refresh and revocation of sessions
with a fake clock and a fake store."""

import pytest
from autobahn.wamp.exception import ApplicationError
from twisted.internet import defer
from twisted.internet.task import Clock

from components.core.errors import INVALID_TOKEN, Refused
from components.core.names import CLOSE_REVOKED, CLOSE_TOKEN_EXPIRED
from components.core.tokens import Grant, Identity, issue_token
from components.service.sessionlife import RevocationPoller, Revocations, SessionLives
from components.wamp.auth import authenticator

SECRET = "s" * 64
T0 = 1_800_000_000


def lives():
    clock = Clock()
    clock.advance(T0)
    return clock, SessionLives(clock, now=clock.seconds)


def recorder():
    ended = []
    return ended, ended.append


def test_a_session_ends_at_exp_and_a_refresh_moves_its_end():
    clock, sl = lives()
    a_end, a = recorder()
    b_end, b = recorder()
    sl.joined("a", "d", "amy", T0, T0 + 3, a)
    sl.joined("b", "d", "bob", T0, T0 + 3, b)
    sl.refreshed("b", Grant(Identity("bob", "d"), exp=T0 + 10, iat=T0 + 1))
    clock.advance(2.9)
    assert a_end == [] and b_end == []
    clock.advance(0.2)
    assert a_end == [CLOSE_TOKEN_EXPIRED] and b_end == [] and not sl.known("a") and sl.exp_of("b") == T0 + 10
    clock.advance(7)
    assert b_end == [CLOSE_TOKEN_EXPIRED] and len(sl) == 0


def test_a_session_that_left_is_not_ended():
    clock, sl = lives()
    ended, end = recorder()
    sl.joined("a", "d", "amy", T0, T0 + 3, end)
    sl.left("a")
    clock.advance(5)
    assert ended == [] and clock.getDelayedCalls() == []


def test_revoke_ends_sessions_issued_until_its_second_and_open_mode_ones():
    clock, sl = lives()
    ended = {}
    for handle, iat in (("old", T0 - 100), ("same-second", T0), ("open", None), ("newer", T0 + 1)):
        sl.joined(handle, "d", "rex", iat, None if iat is None else T0 + 600,
                  lambda reason, h=handle: ended.setdefault(h, reason))
    sl.joined("other", "d", "ben", T0, T0 + 600, lambda reason: ended.setdefault("other", reason))
    assert sl.revoke("d", "rex", T0) == 3
    assert ended == {"old": CLOSE_REVOKED, "same-second": CLOSE_REVOKED, "open": CLOSE_REVOKED}
    assert sl.known("newer") and sl.known("other") and sl.ended[CLOSE_REVOKED] == 3


def test_a_revoked_users_tokens_are_refused_until_a_newer_one():
    clock, sl = lives()
    sl.revocations.add("d", "rex", T0)
    with pytest.raises(Refused) as info:
        sl.grant(SECRET, issue_token(SECRET, "rex", "d", now=T0))
    assert info.value.uri == INVALID_TOKEN and info.value.detail.startswith("revoked")
    # a session joining with a revoked token (it got in before this node knew) ends at once
    ended, end = recorder()
    sl.joined("late", "d", "rex", T0 - 5, T0 + 100, end)
    assert ended == [CLOSE_REVOKED]
    assert sl.revocations.covers("d", "rex", None) and not sl.revocations.covers("d", "rex", T0 + 1)
    assert not sl.revocations.covers("d", "amy", T0)


def test_revocations_keep_the_latest_and_forget_old_ones():
    r = Revocations()
    assert r.add("d", "u", 10) and not r.add("d", "u", 5) and r.add("d", "u", 20)
    r.forget_before(21)
    assert len(r) == 0


class FakeStore:
    def __init__(self):
        self.rows = []
        self.pruned = []

    def revocations_since(self, after_id, since_at):
        return defer.succeed([row for row in self.rows if row[0] > after_id or row[3] >= since_at])

    def prune_revocations(self, before):
        self.pruned.append(before)
        return defer.succeed(0)


def test_the_poller_loads_what_is_in_force_then_applies_new_revocations():
    clock, sl = lives()
    store = FakeStore()
    store.rows = [(1, "d", "old", T0 - 10 * 86400), (2, "d", "rex", T0 - 60)]
    waited = sl.when_loaded(5)
    poller = RevocationPoller(sl, store, max_ttl=7 * 86400, clock=clock)
    poller.start()
    assert sl.loaded and waited.result is True
    assert sl.revocations.covers("d", "rex", T0 - 60) and not sl.revocations.covers("d", "old", None)
    assert store.pruned == [T0 - 7 * 86400]
    ended, end = recorder()
    sl.joined("s", "d", "amy", T0, T0 + 600, end)
    store.rows.append((3, "d", "amy", T0 + 1))
    clock.advance(0.5)
    assert ended == [CLOSE_REVOKED]
    poller.stop()


def test_a_sign_in_waits_a_bounded_time_for_the_revocations():
    clock, sl = lives()
    waited = sl.when_loaded(5)
    clock.advance(5)
    assert waited.result is False


def test_the_authenticator_puts_the_tokens_life_in_authextra_and_refuses_a_revoked_user():
    clock, sl = lives()
    sl.mark_loaded()
    authenticate = authenticator(SECRET, sl)
    principal = authenticate("deptcast", "amy", {"ticket": issue_token(SECRET, "amy", "d", ttl=60, now=T0)})
    assert principal == {"authid": "amy", "role": "member", "extra": {"dept": "d", "exp": T0 + 60, "iat": T0}}
    sl.revoke("d", "amy", T0)
    with pytest.raises(ApplicationError) as info:
        authenticate("deptcast", "amy", {"ticket": issue_token(SECRET, "amy", "d", ttl=60, now=T0)})
    assert info.value.error == INVALID_TOKEN and "revoked" in info.value.args[0]


def test_a_sign_in_on_a_starting_node_waits_for_the_revocations():
    clock, sl = lives()
    sl.revocations.add("d", "amy", T0)
    answer = authenticator(SECRET, sl)("deptcast", None, {"ticket": issue_token(SECRET, "amy", "d", now=T0)})
    assert isinstance(answer, defer.Deferred) and not answer.called
    sl.mark_loaded()
    failures = []
    answer.addErrback(failures.append)
    assert failures and "revoked" in failures[0].value.args[0]
