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
