"""When and how a client renews its token (``components.client.renewal``): the same rules as the
browser client's ``web/refresh.js``."""

import pytest

from components.client import renewal
from components.core.tokens import issue_token

SECRET = "r" * 40
T0 = 1767225600


def tok(user="alice", dept="cardio", role="member", ttl=3600, now=T0):
    return issue_token(SECRET, user, dept, role, ttl, now=now)


def test_claims_are_read_without_the_secret():
    assert renewal.claims_of(tok(ttl=60)) == {"sub": "alice", "dept": "cardio", "role": "member",
                                              "exp": T0 + 60, "iat": T0}
    for bad in [None, "", "a.b.c", "x" * 9000, "ü.ü.ü", 42]:
        assert renewal.claims_of(bad) is None


@pytest.mark.parametrize("iat, exp, at", [
    (0, 3600, 2880),          # an hour: at 80 % of its life
    (0, 200, 140),            # 200 s: a minute before it ends (sooner than 80 %)
    (0, 100, 50),             # shorter: never before half of its life
    (0, 10, 5),
])
def test_renewal_is_planned_ahead_of_expiry(iat, exp, at):
    assert renewal.refresh_at(exp, iat, received_at=-5, rand=lambda: 0) == at


def test_renewal_is_spread_by_a_tenth_of_the_lifetime_at_most():
    assert renewal.refresh_at(3600, 0, 0, rand=lambda: 0.999) == pytest.approx(2880 - 359.64)
    # no iat: the life counts from when the client got the token
    assert renewal.refresh_at(4600, None, 1000, rand=lambda: 0) == 3880
    assert renewal.refresh_at(None, 0, 0) is None            # no exp: nothing to renew
    assert renewal.refresh_at(10, 20, 30, rand=lambda: 0) == 30  # already expired: now


def test_asking_again_while_the_token_lasts():
    assert renewal.retry_before_expiry(100, 60) == 10         # a quarter of what is left
    assert renewal.retry_before_expiry(1000, 0) == 30         # at most 30 s
    assert renewal.retry_before_expiry(100, 99.5) == 0.25     # at least 0.25 s
    assert renewal.retry_before_expiry(100, 99.9) is None     # too late
    assert renewal.retry_before_expiry(None, 0) is None


def test_what_a_token_is_to_the_one_held():
    held = tok(ttl=60)
    assert renewal.compare_tokens(held, tok(ttl=120)) == renewal.NEWER
    assert renewal.compare_tokens(held, tok(ttl=60)) == renewal.STALE
    assert renewal.compare_tokens(held, tok(ttl=30, now=T0 + 10)) == renewal.STALE
    assert renewal.compare_tokens(held, tok(role="publisher", ttl=120)) == renewal.ROLE
    assert renewal.compare_tokens(held, tok(user="bob", ttl=120)) == renewal.IDENTITY
    assert renewal.compare_tokens(held, tok(dept="onco", ttl=120)) == renewal.IDENTITY
    assert renewal.compare_tokens(held, "garbage") == renewal.INVALID
    assert renewal.compare_tokens(held, None) == renewal.INVALID


def test_a_revocation_at_sign_in_is_told_by_its_reason():
    assert renewal.is_revocation("deptcast.error.invalid_token", "the token was revoked")
    assert renewal.is_revocation("deptcast.error.invalid_token", "Revoked")
    assert not renewal.is_revocation("deptcast.error.invalid_token", "the token's signature does not verify")
    assert not renewal.is_revocation("deptcast.error.invalid_token", "unrevoked")
    assert not renewal.is_revocation("deptcast.error.token_expired", "revoked")
    assert not renewal.is_revocation("deptcast.error.invalid_token", None)
