"""Unit tests of components.core.messages: frame validation and envelopes."""

import pytest

from components.core.errors import INVALID_FRAME, NOT_AUTHORIZED, TOO_LARGE, Refused
from components.core.messages import check_send, make_envelope
from components.core.targets import parse_target
from components.core.tokens import Identity

ALICE = Identity("alice", "cardio", "member")
PAT = Identity("pat", "admin", "publisher")


def refused(*args, **kwargs) -> Refused:
    with pytest.raises(Refused) as info:
        check_send(*args, **kwargs)
    return info.value


@pytest.mark.parametrize("to", [None, "", 5, ["cardio"], "car dio", "a_b_c", "_bob", "cardio_", "x" * 65,
                                "déпт", "cardio\n"])
def test_bad_to(to):
    assert refused(PAT, to, "hi").uri == INVALID_FRAME


@pytest.mark.parametrize("message", [None, "", 5, {"text": "x"}])
def test_bad_message(message):
    assert refused(ALICE, "cardio", message).uri == INVALID_FRAME


def test_size_limit_counts_utf8_bytes():
    assert check_send(ALICE, "cardio", "é" * 5, max_bytes=10) == parse_target("cardio")
    e = refused(ALICE, "cardio", "é" * 6, max_bytes=11)
    assert e.uri == TOO_LARGE and "12 bytes" in e.detail


@pytest.mark.parametrize("to", ["ortho", "All", "ortho_bob"])
def test_member_refused_outside_own_department(to):
    e = refused(ALICE, to, "hi")
    assert e.uri == NOT_AUTHORIZED and e.detail


def test_missing_field_reported_before_authorization():
    assert refused(ALICE, "ortho", None).uri == INVALID_FRAME


def test_envelope_fields():
    env = make_envelope("0000000000000007", parse_target("cardio_bob"), ALICE, "hello", 1234)
    assert env == {"id": "0000000000000007", "scope": "user", "target": "cardio_bob", "sender": "alice",
                   "sender_dept": "cardio", "message": "hello", "ts": 1234}
    assert make_envelope("1", parse_target("All"), PAT, "x", 1, seq=3)["seq"] == 3
