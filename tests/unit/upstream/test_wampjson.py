"""Unit tests of :mod:`components.upstream.wampjson`: WAMP JSON nested too deep is a protocol
error before it is parsed, through Autobahn's own serializer; within the bound, messages read
as before."""

import pytest
from autobahn.wamp import message
from autobahn.wamp.exception import ProtocolError
from autobahn.wamp.serializer import JsonSerializer, MsgPackSerializer

from components import upstream
from components.core.jsonlimits import WAMP_MAX_DEPTH
from components.upstream import wampjson


def install():
    [status] = upstream.install(upstream.Wiring(), only=[wampjson.DEPTH.name])
    assert status.applied, status.reason


def nested(depth: int) -> bytes:
    """A PUBLISH whose argument nests ``depth`` levels in all (the message's own list counts)."""
    return b'[16, 1, {}, "deptcast.all", [' + b"[" * (depth - 2) + b"]" * (depth - 2) + b"]]"


def test_a_message_nested_past_the_bound_is_a_protocol_error():
    install()
    with pytest.raises(ProtocolError, match="nests"):
        JsonSerializer().unserialize(nested(WAMP_MAX_DEPTH + 1), False)


def test_without_the_patch_the_same_message_is_parsed():
    """What the patch is for: Autobahn's decoder has no bound of its own (past a few ten
    thousand levels it spends seconds, then overflows)."""
    [msg] = JsonSerializer().unserialize(nested(WAMP_MAX_DEPTH + 1), False)
    assert isinstance(msg, message.Publish)


def test_a_message_within_the_bound_reads_as_before():
    install()
    [msg] = JsonSerializer().unserialize(nested(WAMP_MAX_DEPTH), False)
    assert isinstance(msg, message.Publish) and msg.topic == "deptcast.all"
    payload, binary = JsonSerializer().serialize(message.Publish(1, "deptcast.all", args=[{"to": "x"}]))
    [again] = JsonSerializer().unserialize(payload, binary)
    assert again.args == [{"to": "x"}]


def test_brackets_inside_strings_do_not_count_but_are_scanned():
    """Past the bound in brackets, a message is scanned: brackets in strings are not nesting."""
    install()
    payload = b'[16, 1, {}, "deptcast.all", ["' + b"[" * (WAMP_MAX_DEPTH + 10) + b'"]]'
    [msg] = JsonSerializer().unserialize(payload, False)
    assert msg.args == ["[" * (WAMP_MAX_DEPTH + 10)]


def test_other_serializers_are_left_alone():
    install()
    payload, binary = MsgPackSerializer().serialize(message.Publish(1, "deptcast.all", args=[[[["x"]]]]))
    [msg] = MsgPackSerializer().unserialize(payload, binary)
    assert msg.args == [[[["x"]]]]


def test_uninstall_puts_autobahns_decoder_back():
    from autobahn.wamp import serializer
    upstream_loads = serializer._loads
    install()
    assert serializer._loads is not upstream_loads and serializer._loads.deptcast_max_depth == WAMP_MAX_DEPTH
    upstream.uninstall([wampjson.DEPTH.name])
    assert serializer._loads is upstream_loads


# -- wampjson.c_scanner ----------------------------------------------------------------------

def install_both():
    states = upstream.install(upstream.Wiring(), only=[wampjson.DEPTH.name, wampjson.C_SCANNER.name])
    assert all(s.applied for s in states), states


@pytest.fixture
def uninstalled():
    yield
    upstream.uninstall()


SAMPLES = [
    b'[1, "deptcast", {"roles": {"caller": {}, "subscriber": {}}, "authmethods": ["ticket"], "authid": "u1"}]',
    b'[32, 7, {}, "deptcast.user.cardio_u1"]',
    b'[48, 9, {}, "deptcast.history", [], {"limit": 100, "x": 1.5e3, "n": null, "t": true, "u": "\\u00e9\\n"}]',
    b'[48, 10, {}, "deptcast.ack", [["a", "b"], "delivered"]]',
]


@pytest.mark.parametrize("payload", SAMPLES)
def test_messages_read_the_same_with_the_c_scanner(payload, uninstalled):
    [before] = JsonSerializer().unserialize(payload, False)
    install_both()
    [after] = JsonSerializer().unserialize(payload, False)
    assert type(after) is type(before)
    assert after.marshal() == before.marshal()


def test_the_c_scanner_parses_a_message_without_binary_strings(uninstalled, monkeypatch):
    install_both()
    scanned = []
    monkeypatch.setattr(wampjson.json, "loads", lambda s: scanned.append(s) or [32, 7, {}, "deptcast.all"])
    [msg] = JsonSerializer().unserialize(SAMPLES[1], False)
    assert scanned == [SAMPLES[1].decode()]
    assert isinstance(msg, message.Subscribe)


def test_a_binary_string_is_still_bytes(uninstalled):
    install_both()
    [msg] = JsonSerializer().unserialize(b'[16, 1, {}, "deptcast.all", ["\\u0000AQID"]]', False)
    assert msg.args == [b"\x01\x02\x03"]


def test_the_c_scanners_path_is_bounded_too(uninstalled):
    install_both()
    with pytest.raises(ProtocolError, match="nests"):
        JsonSerializer().unserialize(nested(WAMP_MAX_DEPTH + 1), False)
    upstream.uninstall()
    upstream.install(upstream.Wiring(), only=[wampjson.C_SCANNER.name])
    with pytest.raises(ProtocolError, match="nests"):
        JsonSerializer().unserialize(nested(WAMP_MAX_DEPTH + 1), False)


def test_malformed_json_is_still_a_protocol_error(uninstalled):
    install_both()
    with pytest.raises(ProtocolError):
        JsonSerializer().unserialize(b'[32, 7, {}, "deptcast.all"', False)
