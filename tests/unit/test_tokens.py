"""Unit tests of components.core.tokens: no reactor, no router."""

import time

import jwt
import pytest

from components.core.errors import INVALID_TOKEN, TOKEN_EXPIRED, Refused
from components.core.tokens import Identity, issue_token, verify_token

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
    {"sub": "alice", "dept": "cardio", "role": "admin"},
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
