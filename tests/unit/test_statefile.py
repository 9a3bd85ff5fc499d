"""The saved position's file (``components.core.statefile``): its format and its bounds."""

import json

import pytest

from components.core.statefile import MAX_STATE_BYTES, format_state, parse_state
from tests.support.envelopes import ALL, DEPT, DM


def test_state_round_trip():
    positions = {DEPT: 12, ALL: 0, DM: 3}
    assert parse_state(format_state("cardio_alice", positions).encode()) == ("cardio_alice", positions)


@pytest.mark.parametrize("data, reason", [
    (b"x" * (MAX_STATE_BYTES + 1), "bytes"),
    (b"\xff\xfe", "UTF-8"),
    (b"[" * 30000 + b"]" * 30000, "nests deeper"),
    (b"{nope", "not JSON"),
    (b"[]", "not a deptcast state file"),
    (json.dumps({"deptcast_state": 2, "user": "cardio_alice", "positions": {}}).encode(), "not a deptcast state"),
    (json.dumps({"deptcast_state": 1, "user": "alice", "positions": {}}).encode(), "user key"),
    (json.dumps({"deptcast_state": 1, "user": "cardio_alice", "positions": []}).encode(), "positions"),
    (json.dumps({"deptcast_state": 1, "user": "cardio_alice", "positions": {"x": 1}}).encode(), "not a deptcast topic"),
    (json.dumps({"deptcast_state": 1, "user": "cardio_alice", "positions": {DEPT: -1}}).encode(), "whole number"),
    (json.dumps({"deptcast_state": 1, "user": "cardio_alice", "positions": {DEPT: 1.5}}).encode(), "whole number"),
    (json.dumps({"deptcast_state": 1, "user": "cardio_alice", "positions": {DEPT: 2 ** 60}}).encode(), "whole number"),
])
def test_a_bad_state_file_is_refused_with_its_reason(data, reason):
    with pytest.raises(ValueError, match=reason):
        parse_state(data)
