"""Unit tests of components.core.tokens: no reactor, no router."""

import time

import jwt
import pytest

from components.core.errors import INVALID_TOKEN, TOKEN_EXPIRED, Refused
from components.core.tokens import DEFAULT_MAX_TOKEN_TTL, Identity, issue_token, read_token, verify_token

SECRET = "s" * 64


def refusal(token, authid=None, secret=SECRET) -> Refused:
    with pytest.raises(Refused) as info:
        verify_token(secret, token, authid)
    return info.value


def test_round_trip_member_default():
    token = issue_token(SECRET, "alice", "cardio")
    assert verify_token(SECRET, token) == Identity("alice", "cardio", "member")


def test_publisher_and_matching_authid():
    token = issue_token(SECRET, "pat", "admin", role="publisher")
    identity = verify_token(SECRET, token, authid="pat")
    assert identity.is_publisher and identity.dept == "admin"


def test_role_defaults_to_member_when_claim_absent():
    token = jwt.encode({"sub": "bob", "dept": "ortho", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    assert verify_token(SECRET, token).role == "member"


def test_expired():
    token = issue_token(SECRET, "alice", "cardio", ttl=10, now=time.time() - 100)
    assert refusal(token).uri == TOKEN_EXPIRED


def test_bad_signature():
    token = issue_token("o" * 48, "alice", "cardio")
    e = refusal(token)
    assert e.uri == INVALID_TOKEN and "signature" in e.detail


def test_alg_none_refused():
    token = jwt.encode({"sub": "alice", "dept": "cardio", "exp": int(time.time()) + 60}, None, algorithm="none")
    assert refusal(token).uri == INVALID_TOKEN


def test_other_algorithm_refused():
    token = jwt.encode({"sub": "alice", "dept": "cardio", "exp": int(time.time()) + 60}, SECRET, algorithm="HS512")
    assert refusal(token).uri == INVALID_TOKEN


@pytest.mark.parametrize("missing", ["sub", "dept", "exp"])
def test_missing_claim(missing):
    claims = {"sub": "alice", "dept": "cardio", "exp": int(time.time()) + 60}
    del claims[missing]
    e = refusal(jwt.encode(claims, SECRET, algorithm="HS256"))
    assert e.uri == INVALID_TOKEN and missing in e.detail


@pytest.mark.parametrize("claims", [
    {"sub": "al ice", "dept": "cardio"},
    {"sub": "alice", "dept": "car_dio"},
    {"sub": "alice", "dept": "x" * 65},
    {"sub": "alice", "dept": "cardio", "role": "root"},
    {"sub": "alice", "dept": "All"},
    {"sub": 7, "dept": "cardio"},
])
def test_bad_claim_values(claims):
    claims = {**claims, "exp": int(time.time()) + 60}
    assert refusal(jwt.encode(claims, SECRET, algorithm="HS256")).uri == INVALID_TOKEN


def test_wrong_authid():
    token = issue_token(SECRET, "alice", "cardio")
    e = refusal(token, authid="mallory")
    assert e.uri == INVALID_TOKEN and "authid" in e.detail


@pytest.mark.parametrize("token", [None, "", 42, "not-a-jwt"])
def test_garbage(token):
    assert refusal(token).uri == INVALID_TOKEN


@pytest.mark.parametrize("kwargs", [
    {"user": "a b", "dept": "d"}, {"user": "a", "dept": "d_x"}, {"user": "a", "dept": "d", "role": "root"},
    {"user": "a", "dept": "d", "ttl": 0},
])
def test_issue_rejects_bad_input(kwargs):
    with pytest.raises(ValueError):
        issue_token(SECRET, **kwargs)


# -- the admin role, the reserved department, iat and the longest lifetime


def test_admin_role_is_issued_and_has_publisher_rights():
    identity = verify_token(SECRET, issue_token(SECRET, "op", "ops", role="admin"))
    assert identity.role == "admin" and identity.is_admin and identity.is_publisher


def test_department_all_is_refused_at_issue_and_at_verification():
    with pytest.raises(ValueError, match="reserved"):
        issue_token(SECRET, "bob", "All")
    forged = jwt.encode({"sub": "bob", "dept": "All", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    assert refusal(forged).uri == INVALID_TOKEN and "reserved" in refusal(forged).detail


def test_issue_sets_iat_and_read_token_gives_the_life():
    now = int(time.time())
    grant = read_token(SECRET, issue_token(SECRET, "amy", "cardio", ttl=120, now=now))
    assert (grant.identity, grant.iat, grant.exp) == (Identity("amy", "cardio"), now, now + 120)


def test_a_ttl_beyond_the_longest_is_refused_at_issue():
    with pytest.raises(ValueError, match="DEPTCAST_MAX_TOKEN_TTL"):
        issue_token(SECRET, "amy", "cardio", ttl=DEFAULT_MAX_TOKEN_TTL + 1)
    with pytest.raises(ValueError, match="longest"):
        issue_token(SECRET, "amy", "cardio", ttl=61, max_ttl=60)
    issue_token(SECRET, "amy", "cardio", ttl=DEFAULT_MAX_TOKEN_TTL)


def test_a_token_living_longer_than_the_longest_is_refused():
    now = int(time.time())
    long_lived = jwt.encode({"sub": "a", "dept": "d", "iat": now, "exp": now + 3601}, SECRET, algorithm="HS256")
    with pytest.raises(Refused) as info:
        read_token(SECRET, long_lived, max_ttl=3600)
    assert info.value.uri == INVALID_TOKEN and "longer" in info.value.detail
    assert read_token(SECRET, long_lived, max_ttl=3601).exp == now + 3601
    # without iat the lifetime counts from now
    no_iat = jwt.encode({"sub": "a", "dept": "d", "exp": now + 3601}, SECRET, algorithm="HS256")
    with pytest.raises(Refused):
        read_token(SECRET, no_iat, max_ttl=3600)
    assert read_token(SECRET, no_iat, max_ttl=3700).iat is None


@pytest.mark.parametrize("iat", ["yesterday", True, -5, None])
def test_iat_must_be_seconds_and_not_in_the_future(iat):
    now = int(time.time())
    claims = {"sub": "a", "dept": "d", "exp": now + 60, "iat": now + 3600 if iat is None else iat}
    with pytest.raises(Refused) as info:
        read_token(SECRET, jwt.encode(claims, SECRET, algorithm="HS256"))
    assert info.value.uri == INVALID_TOKEN
