"""Unit tests of components.core.history: ids and the arguments of deptcast.history."""

import pytest

from components.core.errors import INVALID_FRAME, NOT_AUTHORIZED, Refused
from components.core.history import HistoryRequest, format_id, history_request, parse_after

TOPICS = ("deptcast.dept.hr", "deptcast.all", "deptcast.user.hr_bob")


def test_ids_are_fixed_width_and_round_trip():
    assert format_id(42) == "0000000000000042"
    assert parse_after(format_id(42)) == 42
    assert parse_after(None) == parse_after("") == 0


@pytest.mark.parametrize("after", ["x", "-1", 5, "1" * 17, 1.5])
def test_bad_after(after):
    with pytest.raises(Refused) as info:
        parse_after(after)
    assert info.value.uri == INVALID_FRAME


def test_defaults_and_cap():
    assert history_request(TOPICS) == HistoryRequest(TOPICS)
    assert history_request(TOPICS, limit=5000, cap=1000).limit == 1000
    assert history_request(TOPICS, after="0000000000000007", latest=True) == \
        HistoryRequest(TOPICS, after=7, latest=True)


def test_positions():
    request = history_request(TOPICS, positions={"deptcast.all": 3, "deptcast.user.hr_bob": 0})
    assert request.positions == {"deptcast.all": 3, "deptcast.user.hr_bob": 0}
    assert history_request(TOPICS, positions={"deptcast.all": 2 ** 63 - 1}).positions == {"deptcast.all": 2 ** 63 - 1}


@pytest.mark.parametrize("kwargs, uri", [
    ({"positions": {"deptcast.all": -1}}, INVALID_FRAME),
    # past a signed 64-bit column (SQLite's OverflowError answered unavailable)
    ({"positions": {"deptcast.all": 2 ** 63}}, INVALID_FRAME),
    ({"positions": {"deptcast.all": 2 ** 70}}, INVALID_FRAME),
    ({"positions": {"deptcast.all": 1.5}}, INVALID_FRAME),
    ({"positions": {"deptcast.all": "3"}}, INVALID_FRAME),
    ({"positions": {"deptcast.all": True}}, INVALID_FRAME),
    ({"positions": {}}, INVALID_FRAME),
    ({"positions": ["deptcast.all"]}, INVALID_FRAME),
    ({"positions": {"deptcast.all": 1}, "after": "0000000000000001"}, INVALID_FRAME),
    ({"positions": {"deptcast.all": 1}, "latest": True}, INVALID_FRAME),
    # another department's topic, another bob's inbox
    ({"positions": {"deptcast.dept.it": 0}}, NOT_AUTHORIZED),
    ({"positions": {"deptcast.user.onco_bob": 0}}, NOT_AUTHORIZED),
    ({"limit": 0}, INVALID_FRAME),
    ({"limit": True}, INVALID_FRAME),
    ({"latest": "yes"}, INVALID_FRAME),
])
def test_refusals(kwargs, uri):
    with pytest.raises(Refused) as info:
        history_request(TOPICS, **kwargs)
    assert info.value.uri == uri


def test_a_full_answer_fits_in_one_wamp_message_on_ws():
    """The router applies /ws's message cap to what it sends: a history answer bounded by
    answer_cap, with every envelope at its worst (all control characters, escaped by JSON in
    six bytes each), still fits; and one envelope of the largest message always does."""
    import json
    from components.core.frames import wamp_message_cap
    from components.core.history import answer_cap, envelope_bytes
    for limit in (1024, 64 * 1024, 256 * 1024):
        cap = wamp_message_cap(limit)
        worst = "\x01" * limit
        envelope = {"id": "0" * 16, "scope": "user", "target": "d" * 64 + "_" + "u" * 64, "sender": "s" * 64,
                    "sender_dept": "d" * 64, "message": worst, "ts": 10 ** 13, "seq": 10 ** 12}
        assert len(json.dumps(envelope)) <= envelope_bytes(worst) <= answer_cap(limit) < cap
        # a page of many small envelopes under the bound stays under the cap too
        small = dict(envelope, message="\x01" * 100)
        rows = answer_cap(limit) // envelope_bytes(small["message"])
        result = json.dumps([50, 1, {}, [[small] * rows]])   # RESULT, request, details, [answer]
        assert len(result) < cap
