"""Property tests (hypothesis) of the pure parsers and rules a client's input meets: JSON
bounds, frames, targets, names, legacy keys and handshakes, tokens, policy, history
arguments, the dev form's locality rule, the rate limiter.

Each says: whatever comes in, the answer is a value or the documented refusal
(:class:`~components.core.errors.Refused` with the contract's URI, or a
:class:`~components.core.legacy.HandshakeRefused` with its status), never another exception;
and where a rule has an exact meaning (a depth, a round trip, an authorization table), that
it holds. Derandomized, so a run is reproducible; a failure prints the smallest example.
"""

import json
import os
import string
import time
from typing import Any

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from components.core import frames, history, jsonlimits, legacy, localonly, names, policy
from components.core.errors import (INVALID_FRAME, INVALID_TOKEN, NOT_AUTHORIZED, TOKEN_EXPIRED, TOO_LARGE,
                                    Refused)
from components.core.messages import check_message, check_send
from components.core.ratelimit import RateLimiter
from components.core.targets import SCOPE_ALL, SCOPE_DEPT, SCOPE_USER, parse_target
from components.core.tokens import Identity, issue_token, verify_token

SECRET = "props-secret-" + "p" * 40
#: examples per property: 25 keeps `pytest tests/unit` within seconds; the README's test command
#: (scripts/test) searches 150; a longer search:
#: DEPTCAST_PROPS_EXAMPLES=2000 .venv/bin/python -m pytest tests/unit/test_parser_props.py
EXAMPLES = int(os.environ.get("DEPTCAST_PROPS_EXAMPLES", "25"))
PROPS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.too_slow])

# -- strategies

NAME_ALPHABET = string.ascii_letters + string.digits + "-"
names_st = st.builds(lambda parts: ".".join(parts),
                     st.lists(st.text(NAME_ALPHABET, min_size=1, max_size=8), min_size=1, max_size=3)
                     ).filter(lambda n: len(n) <= names.NAME_MAX)
# text that looks like names and keys, and text that does not
namelike = st.text(NAME_ALPHABET + "._ @:/", max_size=20)
odd_text = st.one_of(st.text(max_size=40), namelike, st.sampled_from(
    ["All", "all", ".", "a.", ".a", "a..b", "_", "a_", "_b", "a_b_c", "\x00", "²", "١٢", "٣", "𝟙", "é",
     "a" * 65, " a", "a\n", "null", "ping", "\ud835", "a\udfd9b"]))
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), odd_text)
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=20)
identities = st.builds(Identity, names_st, names_st, st.sampled_from(names.CLIENT_ROLES))


def _depth(value: Any) -> int:
    """The nesting depth of a parsed JSON value (iterative: values may be deep)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            depth += 1
            stack.extend((v, depth) for v in (item.values() if isinstance(item, dict) else item))
        deepest = max(deepest, depth)
    return deepest


# payloads a hostile client sends: random bytes and text, JSON of any shape, deep brackets
# (with strings full of brackets and escapes around them), huge numbers, broken UTF-8
hostile_text = st.one_of(
    st.text(max_size=200),
    st.builds(json.dumps, json_values),
    st.builds(lambda n, s: "[" * n + json.dumps(s) + "]" * n, st.integers(0, 3000), st.text(max_size=10)),
    st.builds(lambda n: '{"to": "a", "message": ' + "[" * n, st.integers(0, 3000)),
    st.builds(lambda s: json.dumps({"to": s, "message": s}), st.text("[]{}\"\\", max_size=50)),
    st.builds(lambda d: '{"to": "a", "message": ' + "9" * d + "}", st.integers(1, 6000)),
    st.builds(lambda d: '{"to": 1e' + "9" * d + "}", st.integers(1, 400)),
    st.sampled_from(['"unterminated', '"\\', '["\\"]', '{"a": "\\u12"}', "NaN", "-Infinity", "\ud800"]),
)
hostile_bytes = st.one_of(st.binary(max_size=200), hostile_text.map(lambda t: t.encode("utf-8", "surrogatepass")))


def refused_with(e: Refused, *uris: str) -> bool:
    return isinstance(e, Refused) and e.uri in uris and isinstance(e.detail, str)


# -- JSON bounds


@PROPS
@given(json_values, st.booleans(), st.booleans())
def test_nesting_depth_of_json_is_its_depth(value, ascii_only, indent):
    text = json.dumps(value, ensure_ascii=ascii_only, indent=2 if indent else None)
    assert jsonlimits.nesting_depth(text) == _depth(value)


@PROPS
@given(hostile_text)
def test_nesting_depth_bounds_what_the_parser_reaches(text):
    depth = jsonlimits.nesting_depth(text)
    assert depth >= 0
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return
    assert depth == _depth(value)


@PROPS
@given(st.one_of(hostile_bytes, hostile_text), st.integers(1, 10_000))
def test_load_json_answers_a_value_or_its_refusal(data, max_bytes):
    try:
        value = jsonlimits.load_json(data, max_bytes)
    except Refused as e:
        assert refused_with(e, INVALID_FRAME, TOO_LARGE)
        return
    assert _depth(value) <= jsonlimits.MAX_DEPTH


@settings(PROPS, max_examples=30)
@given(st.integers(jsonlimits.MAX_DEPTH + 1, 200_000), st.sampled_from("[{"))
def test_deep_documents_are_refused_before_parsing(depth, bracket):
    # the depth the issue's attacker used, and everything above the bound
    text = bracket * depth if bracket == "[" else '{"a":' * depth
    try:
        jsonlimits.load_json(text)
    except Refused as e:
        assert e.uri == INVALID_FRAME and "nests" in e.detail
    else:
        raise AssertionError("a document deeper than the bound was parsed")


# -- frames


@PROPS
@given(hostile_bytes, st.booleans(), st.one_of(st.none(), st.integers(0, 400)))
def test_parse_frame_answers_ping_a_send_or_its_refusal(payload, is_binary, max_bytes):
    try:
        frame = frames.parse_frame(payload, is_binary, max_bytes)
    except Refused as e:
        assert refused_with(e, INVALID_FRAME, TOO_LARGE)
        return
    assert not is_binary
    assert frame is None or isinstance(frame, frames.SendFrame)


@PROPS
@given(json_values, json_values)
def test_a_json_object_frame_passes_its_fields_unchanged(to, message):
    payload = json.dumps({"to": to, "message": message}).encode()
    assume(jsonlimits.nesting_depth(payload.decode()) <= jsonlimits.MAX_DEPTH)
    frame = frames.parse_frame(payload)
    assert json.dumps([frame.to, frame.message]) == json.dumps([to, message])


@PROPS
@given(st.text(), st.text())
def test_error_frames_are_json_that_round_trips(uri, detail):
    assert json.loads(frames.error_frame(uri, detail)) == {"error": uri, "detail": detail}


# -- names and targets


@PROPS
@given(st.one_of(json_values, odd_text))
def test_is_name_is_the_naming_rule(value):
    expected = (isinstance(value, str) and 1 <= len(value) <= names.NAME_MAX
                and all(c in NAME_ALPHABET + "." for c in value)
                and not value.startswith(".") and not value.endswith(".") and ".." not in value)
    assert names.is_name(value) == expected


@PROPS
@given(names_st, names_st)
def test_user_keys_split_one_way(dept, user):
    assert names.parse_user_key(names.user_key(dept, user)) == (dept, user)
    target = parse_target(names.user_key(dept, user))
    assert (target.scope, target.dept, target.user, target.topic) == (SCOPE_USER, dept, user,
                                                                       names.user_topic(dept, user))


@PROPS
@given(st.one_of(json_values, odd_text))
def test_parse_target_answers_a_publishable_target_or_invalid_frame(to):
    try:
        target = parse_target(to)
    except Refused as e:
        assert refused_with(e, INVALID_FRAME)
        return
    # everything parse_target accepts can be published: every part of its topic is a name
    assert target.scope in (SCOPE_DEPT, SCOPE_ALL, SCOPE_USER)
    if target.scope == SCOPE_DEPT:
        assert names.is_name(target.dept) and target.topic == names.dept_topic(to)
    elif target.scope == SCOPE_USER:
        assert names.is_name(target.dept) and names.is_name(target.user)
    else:
        assert to == names.ALL and target.topic == names.TOPIC_ALL


# any code point, lone surrogates (which JSON can carry as "\ud835") mixed in often
any_text = st.one_of(st.text(st.characters(blacklist_categories=()), max_size=30),
                     st.text(st.sampled_from(["a", "é", "😀", "\ud835", "\udfd9"]), max_size=6))


@PROPS
@given(st.one_of(any_text, json_values), st.integers(1, 100))
def test_check_message_answers_the_text_or_its_refusal(message, max_bytes):
    try:
        assert check_message(message, max_bytes) == message
    except Refused as e:
        assert refused_with(e, INVALID_FRAME, TOO_LARGE)
        return
    assert 0 < len(message.encode("utf-8")) <= max_bytes


@PROPS
@given(identities, st.one_of(json_values, odd_text), st.one_of(json_values, odd_text), st.integers(1, 100))
def test_check_send_answers_a_target_or_its_refusal(identity, to, message, max_bytes):
    try:
        target = check_send(identity, to, message, max_bytes)
    except Refused as e:
        assert refused_with(e, INVALID_FRAME, TOO_LARGE, NOT_AUTHORIZED)
        return
    assert isinstance(message, str) and 0 < len(message.encode()) <= max_bytes
    assert policy.may_send(identity, target)
    if not identity.is_publisher:
        assert target.dept == identity.dept


# -- policy


uris = st.one_of(odd_text, st.builds(lambda p, s: p + s, st.sampled_from(
    [names.TOPIC_DEPT, names.TOPIC_PRESENCE, names.TOPIC_USER, names.TOPIC_ALL, names.INTERNAL_PREFIX, "wamp."]),
    odd_text), st.sampled_from(sorted(names.CLIENT_PROCEDURES)))


@PROPS
@given(identities, uris, st.sampled_from(["subscribe", "call", "publish", "register", "", "x"]),
       st.dictionaries(st.sampled_from(["match", "x"]), st.sampled_from(["exact", "prefix", "wildcard", ""])))
def test_authorize_is_the_contracts_table(identity, uri, action, options):
    allowed = policy.authorize(identity, uri, action, options)
    assert isinstance(allowed, bool)
    if action == "call":
        assert allowed == (uri in names.CLIENT_PROCEDURES)
    elif action == "subscribe" and options.get("match", "exact") == "exact":
        own = {names.TOPIC_ALL, names.dept_topic(identity.dept), names.presence_topic(identity.dept),
               names.user_topic(identity.dept, identity.user)}
        if identity.is_publisher:
            dept = uri.split(".", 2)[2] if uri.startswith((names.TOPIC_DEPT, names.TOPIC_PRESENCE)) else None
            assert allowed == (uri in own or (dept is not None and names.is_name(dept)))
        else:
            assert allowed == (uri in own)
    else:
        assert not allowed


# -- legacy keys, handshakes and frames


patterns = st.one_of(
    st.just("{dept}_{user}"),
    st.builds(lambda pre, mid, suf, swap: pre + ("{user}" if swap else "{dept}") + mid
              + ("{dept}" if swap else "{user}") + suf,
              st.text(NAME_ALPHABET + "._@:/", max_size=3), st.text(NAME_ALPHABET + "._@:/~", max_size=3),
              st.text(NAME_ALPHABET + "._@:", max_size=3), st.booleans()),
    st.text(max_size=20))


@PROPS
@given(patterns, names_st, names_st, odd_text)
def test_a_key_pattern_splits_every_key_it_makes_one_way(text, dept, user, other):
    try:
        pattern = legacy.KeyPattern(text)
    except ValueError:
        return
    assert pattern.parse(pattern.format(dept, user)) == (dept, user)
    # anything else: a split, or nothing; never an exception
    found = pattern.match(other)
    assert found is None or (names.is_name(found[0]) and names.is_name(found[1]))


@PROPS
@given(st.one_of(odd_text, st.builds(lambda k: "/webSocket/" + k, odd_text)),
       st.dictionaries(st.sampled_from(["token", "x"]), st.lists(odd_text, max_size=2), max_size=2),
       st.lists(st.one_of(odd_text, st.sampled_from([legacy.PROTOCOL, legacy.TOKEN_PROTOCOL_PREFIX])), max_size=3),
       st.booleans())
def test_check_handshake_answers_a_client_or_its_refusal(path, params, protocols, open_mode):
    try:
        client = legacy.check_handshake(path, params, legacy.KeyPattern("{dept}_{user}"), SECRET, open_mode, protocols)
    except legacy.HandshakeRefused as e:
        assert e.status in (400, 401, 403) and e.reason.isascii() and "\r" not in e.reason and "\n" not in e.reason
        return
    assert client.open_mode and open_mode  # no valid token can be made at random


@PROPS
@given(names_st, names_st, st.sampled_from(names.CLIENT_ROLES), st.booleans(), st.booleans())
def test_a_token_passes_in_the_query_or_the_subprotocol(dept, user, role, in_header, offer_answer):
    jwt = issue_token(SECRET, user, dept, role)
    key = names.user_key(dept, user)
    protocols = (([legacy.PROTOCOL] if offer_answer else [])
                 + ([legacy.TOKEN_PROTOCOL_PREFIX + jwt] if in_header else []))
    params = {} if in_header else {"token": [jwt]}
    try:
        client = legacy.check_handshake(f"/webSocket/{key}", params, legacy.KeyPattern("{dept}_{user}"), SECRET,
                                        False, protocols)
    except legacy.HandshakeRefused as e:
        # a token in the header without the subprotocol to answer with
        assert in_header and not offer_answer and e.status == 400
        return
    assert client.identity == Identity(user, dept, role)
    assert client.protocol == (legacy.PROTOCOL if offer_answer else None)
    # every value a browser sends in Sec-WebSocket-Protocol must be an HTTP token
    for p in protocols:
        assert p and all(c in string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~" for c in p)


@PROPS
@given(st.one_of(json_values, odd_text))
def test_legacy_out_frames_and_targets_never_raise(value):
    assert legacy.message_frame(value) is None or isinstance(legacy.message_frame(value), bytes)
    legacy.contract_target(value, legacy.KeyPattern("{user}@{dept}"))
    reason = legacy.safe_reason(str(value))
    assert reason.isascii() and all(" " <= c <= "~" for c in reason) and len(reason) <= 200


# -- tokens


tokenish = st.one_of(json_values, odd_text, st.text(string.ascii_letters + string.digits + "-_.", max_size=300),
                     st.builds(lambda a, b, c: f"{a}.{b}.{c}",
                               *[st.text(string.ascii_letters + "-_=", max_size=40)] * 3))


@PROPS
@given(tokenish, st.one_of(st.none(), odd_text))
def test_verify_token_answers_an_identity_or_its_refusal_without_the_token(token, authid):
    try:
        verify_token(SECRET, token, authid)
    except Refused as e:
        assert refused_with(e, INVALID_TOKEN, TOKEN_EXPIRED)
        if isinstance(token, str) and len(token) >= 16:
            assert token not in e.detail
        return
    raise AssertionError("a random token verified")


@PROPS
@given(names_st, names_st.filter(lambda n: n != names.ALL), st.sampled_from(names.CLIENT_ROLES),
       st.integers(1, 10 ** 5),
       st.one_of(st.none(), names_st))
def test_issued_tokens_verify_and_carry_their_identity(user, dept, role, ttl, authid):
    token = issue_token(SECRET, user, dept, role, ttl)
    try:
        identity = verify_token(SECRET, token, authid)
    except Refused as e:
        assert e.uri == INVALID_TOKEN and authid is not None and authid != user
        return
    assert identity == Identity(user, dept, role)
    # a token signed with another secret, or expired, never verifies
    for bad, uri in ((issue_token(SECRET + "x", user, dept, role, ttl), INVALID_TOKEN),
                     (issue_token(SECRET, user, dept, role, 1, now=time.time() - 120), TOKEN_EXPIRED)):
        try:
            verify_token(SECRET, bad)
        except Refused as e:
            assert e.uri == uri and bad not in e.detail
        else:
            raise AssertionError("a bad token verified")


# -- history arguments


DIGITISH = ["0000000000000042", "42", "", "²", "١٢", "٣", "𝟙", "-1", "1e3", " 1", "00000000000000001"]
history_args = st.one_of(st.sampled_from(DIGITISH), json_values, odd_text)


@PROPS
@given(names_st, names_st, history_args, history_args, history_args,
       st.one_of(json_values, st.dictionaries(st.one_of(odd_text, st.sampled_from(
           [names.TOPIC_ALL, "deptcast.dept.x"])), st.one_of(st.integers(), json_values), max_size=3)),
       st.integers(1, 1000))
@example("d", "u", "²", 10, False, None, 100)       # str.isdigit() is true for "²"; int() refuses it
@example("d", "u", "١٢", 10, False, None, 100)
def test_history_request_answers_a_request_or_its_refusal(dept, user, after, limit, latest, positions, cap):
    topics = names.client_topics(dept, user)
    try:
        request = history.history_request(topics, after, limit, latest, positions, cap=cap)
    except Refused as e:
        assert refused_with(e, INVALID_FRAME, NOT_AUTHORIZED)
        return
    assert 1 <= request.limit <= cap and request.after >= 0
    assert request.positions is None or set(request.positions) <= set(topics)


# -- the dev form's locality rule


hosts = st.one_of(st.none(), odd_text, st.sampled_from(
    ["localhost", "localhost:8080", "127.0.0.1", "127.0.0.1:80", "[::1]:8080", "[::1]", "::1",
     "127.0.0.1.evil.example", "localhost.evil.example:80", "[::1]x", "evil.example"]))


@PROPS
@given(st.one_of(odd_text, st.sampled_from(["127.0.0.1", "::1", "::ffff:127.0.0.1", "10.0.0.1"])), hosts, hosts,
       st.lists(st.one_of(odd_text, st.sampled_from(["X-Forwarded-For", "forwarded", "Via", "X-Real-IP", "Host"])),
                max_size=4))
def test_local_refusal_admits_only_this_machine(peer, host, origin, header_names):
    why = localonly.local_refusal(peer, host, None if origin is None else "http://" + origin, header_names)
    assert why is None or isinstance(why, str)
    if why is None:
        assert peer in localonly.LOOPBACK_PEERS
        assert host is not None and localonly.is_local_host_name(host)
        assert not any(n.lower() in localonly.PROXY_HEADERS or n.lower().startswith("x-forwarded-")
                       for n in header_names)


# -- the rate limiter


@PROPS
@given(st.floats(0.1, 50), st.integers(1, 20), st.lists(st.floats(0, 0.5), min_size=1, max_size=200))
def test_the_rate_limiter_never_allows_more_than_burst_plus_rate(rate, burst, gaps):
    limiter = RateLimiter(rate, burst)
    now, allowed = 0.0, 0
    for gap in gaps:
        now += gap
        allowed += limiter.allow("k", now)
    assert allowed <= burst + rate * now + 1e-6
    # another key has a bucket of its own
    assert limiter.allow("other", now)
