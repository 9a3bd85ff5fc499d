"""Unit tests of :mod:`components.core.legacy`: keys, handshakes, out-frames."""

import time

import pytest

from components.core import legacy as lf
from components.core.errors import INVALID_FRAME, INVALID_TOKEN, NOT_AUTHORIZED, TOKEN_EXPIRED
from components.core.settings import ConfigError, load_settings
from components.core.tokens import Identity, issue_token

SECRET = "unit-secret-" + "s" * 40
DEFAULT = lf.KeyPattern("{dept}_{user}")


def tok(user="ann", dept="sales", role="member", **kw):
    return issue_token(SECRET, user, dept, role, **kw)

# -- key patterns


def test_default_pattern_splits_dept_and_user():
    assert DEFAULT.parse("sales_ann") == ("sales", "ann")
    assert DEFAULT.parse("R.and-D_j.doe-2") == ("R.and-D", "j.doe-2")
    assert DEFAULT.format("sales", "ann") == "sales_ann"


@pytest.mark.parametrize("key", ["", "sales", "_ann", "sales_", "a_b_c", "sales ann", "sales_an n",
                                 "sal/es_ann", "x" * 65 + "_ann", "sales_" + "u" * 65])
def test_default_pattern_refuses_keys_that_do_not_parse(key):
    with pytest.raises(lf.HandshakeRefused) as info:
        DEFAULT.parse(key)
    assert (info.value.status, info.value.uri) == (400, INVALID_FRAME)
    assert "{dept}_{user}" in info.value.detail


def test_custom_pattern_with_literals_and_reversed_order():
    pattern = lf.KeyPattern("u:{user}@{dept}")
    assert pattern.parse("u:ann@sales") == ("sales", "ann")
    assert pattern.format("sales", "ann") == "u:ann@sales"
    with pytest.raises(lf.HandshakeRefused):
        pattern.parse("ann@sales")  # the literal prefix is part of the pattern
    # regex characters in the pattern are literal
    assert lf.KeyPattern("{dept}+{user}").parse("sales+ann") == ("sales", "ann")
    with pytest.raises(lf.HandshakeRefused):
        lf.KeyPattern("{dept}+{user}").parse("salesann")


@pytest.mark.parametrize("pattern", ["{dept}{user}", "{dept}-{user}", "{dept}.{user}", "{dept}x{user}"])
def test_ambiguous_patterns_are_refused(pattern):
    with pytest.raises(ValueError, match="ambiguous"):
        lf.KeyPattern(pattern)


@pytest.mark.parametrize("pattern", ["{dept}", "{user}_{user}", "{dept}_{dept}_{user}"])
def test_patterns_need_each_placeholder_once(pattern):
    with pytest.raises(ValueError, match="once each"):
        lf.KeyPattern(pattern)


def test_an_ambiguous_pattern_fails_at_start(tmp_path):
    env = {"DEPTCAST_JWT_SECRET": SECRET, "DEPTCAST_LEGACY_KEY_PATTERN": "{dept}-{user}"}
    with pytest.raises(ConfigError, match="DEPTCAST_LEGACY_KEY_PATTERN.*ambiguous"):
        load_settings(tmp_path, env)


def test_match_does_not_raise():
    assert DEFAULT.match("sales_ann") == ("sales", "ann")
    assert DEFAULT.match("sales") is None and DEFAULT.match(None) is None and DEFAULT.match(3) is None


def test_legacy_targets_become_contract_targets():
    pattern = lf.KeyPattern("{user}@{dept}")
    assert lf.contract_target("ann@sales", pattern) == "sales_ann"
    for unchanged in ("sales", "All", "sales_ann", "bad target!", None, 42, ""):
        assert lf.contract_target(unchanged, pattern) == unchanged
    # the default pattern is the contract's own form
    assert lf.contract_target("sales_ann", DEFAULT) == "sales_ann"
    assert lf.contract_target("All", DEFAULT) == "All"


# -- the key in the path


@pytest.mark.parametrize("path, key", [
    ("/webSocket/sales_ann", "sales_ann"),
    ("/webSocket/sales_ann/", "sales_ann"),
    ("/webSocket/sales_ann?token=x", "sales_ann"),
    ("/prefix/webSocket/sales_ann", "sales_ann"),
    ("/webSocket/sales%5Fann", "sales_ann"),
])
def test_key_from_path(path, key):
    assert lf.key_from_path(path) == key


@pytest.mark.parametrize("path", ["/webSocket", "/webSocket/", "/webSocket/a/b", "/other/sales_ann", "/"])
def test_paths_without_exactly_one_key_are_refused(path):
    with pytest.raises(lf.HandshakeRefused) as info:
        lf.key_from_path(path)
    assert info.value.status == 400


# -- handshakes


def handshake(path="/webSocket/sales_ann", token=None, open_mode=False, pattern=DEFAULT):
    params = {"token": [token]} if token is not None else {}
    return lf.check_handshake(path, params, pattern, SECRET, open_mode)


def test_handshake_with_matching_token_gets_the_tokens_identity():
    client = handshake(token=tok("ann", "sales", "publisher"))
    assert client.identity == Identity("ann", "sales", "publisher")
    assert (client.key, client.open_mode) == ("sales_ann", False)
    assert client.topics == ("deptcast.dept.sales", "deptcast.all", "deptcast.user.sales_ann")


def test_handshake_with_a_custom_pattern():
    client = handshake("/webSocket/ann@sales", tok(), pattern=lf.KeyPattern("{user}@{dept}"))
    assert client.identity == Identity("ann", "sales")


@pytest.mark.parametrize("path, token, status, uri", [
    ("/webSocket/sales_ann", None, 401, INVALID_TOKEN),
    ("/webSocket/sales_ann", "", 401, INVALID_TOKEN),
    ("/webSocket/sales_ann", "garbage", 401, INVALID_TOKEN),
    ("/webSocket/sales_ann", issue_token("another-secret-" + "z" * 40, "ann", "sales"), 401, INVALID_TOKEN),
    ("/webSocket/sales_ann", tok(ttl=60, now=time.time() - 3600), 401, TOKEN_EXPIRED),
    ("/webSocket/hr_ann", tok("ann", "sales"), 403, NOT_AUTHORIZED),
    ("/webSocket/sales_bob", tok("ann", "sales"), 403, NOT_AUTHORIZED),
    ("/webSocket/salesann", tok(), 400, INVALID_FRAME),
])
def test_handshake_refusals(path, token, status, uri):
    with pytest.raises(lf.HandshakeRefused) as info:
        handshake(path, token)
    assert (info.value.status, info.value.uri) == (status, uri)
    assert info.value.reason.startswith(uri + ": ")


def test_open_mode_admits_tokenless_clients_as_members_of_the_keys_department():
    client = handshake("/webSocket/hr_zed", None, open_mode=True)
    assert client.identity == Identity("zed", "hr", "member")
    assert client.open_mode is True


def test_open_mode_still_checks_a_token_that_is_given():
    with pytest.raises(lf.HandshakeRefused) as info:
        handshake("/webSocket/hr_zed", "garbage", open_mode=True)
    assert info.value.status == 401
    with pytest.raises(lf.HandshakeRefused) as info:
        handshake("/webSocket/hr_zed", tok("zed", "sales"), open_mode=True)
    assert info.value.status == 403
    assert handshake("/webSocket/hr_zed", tok("zed", "hr", "publisher"), open_mode=True).identity.role == "publisher"


def test_refusal_reasons_are_safe_for_a_status_line():
    with pytest.raises(lf.HandshakeRefused) as info:
        handshake("/webSocket/bad%0d%0aSet-Cookie:%20x")
    assert "\r" not in info.value.reason and "\n" not in info.value.reason
    assert all(0x20 <= ord(c) < 0x7f for c in info.value.reason)
    assert lf.safe_reason("ä\x00b" + "c" * 500) == "??b" + "c" * 197


def test_message_frame_is_exactly_the_message_text():
    envelope = {"id": "1", "scope": "dept", "target": "x", "sender": "a", "sender_dept": "x",
                "message": '{"json": "stays text"} ✓', "ts": 1}
    assert lf.message_frame(envelope) == '{"json": "stays text"} ✓'.encode()
    assert lf.message_frame({"message": 3}) is None
    assert lf.message_frame("not an envelope") is None
