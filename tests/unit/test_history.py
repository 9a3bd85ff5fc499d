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


@pytest.mark.parametrize("kwargs, uri", [
    ({"positions": {"deptcast.all": -1}}, INVALID_FRAME),
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
