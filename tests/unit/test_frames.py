"""Unit tests of :mod:`components.core.frames`: the JSON send frames."""

import json

import pytest

from components.core import frames
from components.core.errors import INVALID_FRAME, TOO_LARGE, Refused

def test_ping_is_a_heartbeat():
    assert frames.parse_frame(b"ping") is None
    assert frames.parse_frame(b" ping\n") is None


def test_a_send_frame_passes_its_fields_unjudged():
    assert frames.parse_frame(b'{"to": "All", "message": "hi"}') == frames.SendFrame("All", "hi")
    # field rules are check_send's: missing or odd fields go through as they are
    assert frames.parse_frame(b'{"message": "hi"}') == frames.SendFrame(None, "hi")
    assert frames.parse_frame(b'{"to": 1, "message": [2], "extra": 3}') == frames.SendFrame(1, [2])
    assert frames.parse_frame('{"to": "x", "message": "通知"}'.encode()) == frames.SendFrame("x", "通知")


@pytest.mark.parametrize("payload, binary", [
    (b"{not json", False), (b"", False), (b"[1, 2]", False), (b'"text"', False), (b"null", False),
    (b"\xff\xfe", False), (b'{"to": "x", "message": "y"}', True),
])
def test_frames_that_can_never_be_a_send_request(payload, binary):
    with pytest.raises(Refused) as info:
        frames.parse_frame(payload, binary)
    assert info.value.uri == INVALID_FRAME


def test_frame_cap_leaves_room_for_json_around_a_full_message():
    cap = frames.frame_cap(64 * 1024)
    assert cap == 2 * 64 * 1024 + 4096
    full = json.dumps({"to": "x" * 64, "message": "m" * 64 * 1024}).encode()
    assert len(full) < cap
    refusal = frames.oversize_refusal(cap + 1, cap)
    assert refusal.uri == TOO_LARGE and str(cap) in refusal.detail


def test_error_frame():
    frame = frames.error_frame(INVALID_FRAME, "the field 'to' is missing")
    assert json.loads(frame) == {"error": INVALID_FRAME, "detail": "the field 'to' is missing"}


def test_send_body():
    assert frames.parse_send_body(b'{"to": "x", "message": "y"}') == frames.SendFrame("x", "y")
    for body in (b"ping", b"[]", b"{", b""):
        with pytest.raises(Refused) as info:
            frames.parse_send_body(body)
        assert info.value.uri == INVALID_FRAME
