"""A live fuzz of a real node (issue 9, item 11): thousands of random frames on the legacy
endpoint, random requests to the HTTP API, random arguments to the WAMP procedures, and the
protocol violations RFC 6455 answers with a close. Seeded (:data:`SEED`), bounded in count.

What must hold: every frame gets exactly its answer (an error frame with a contract URI, or
the accepted message itself), the socket stays open, the node logs no internal error, and it
keeps serving.
"""

import json
import random
import string
from typing import List, Tuple

import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from twisted.internet import defer

from tests.support import raw
from tests.support.legacy import connect_legacy, post_send
from tests.support.nodes import token
from tests.support.wamp import connect, wait_for

SEED = 20261126
#: the refusals a client may see from a send (legacy frame, HTTP body, deptcast.send)
SEND_ERRORS = {"deptcast.error.invalid_frame", "deptcast.error.too_large", "deptcast.error.not_authorized",
               "deptcast.error.rate_limited"}
FRAMES = 3000
HTTP_REQUESTS = 300
WAMP_CALLS = 300


# -- what a fuzzing client sends


def _odd_text(rng: random.Random, size: int) -> str:
    """Unicode from every corner: controls, combining marks, right-to-left, zero-width,
    astral planes (no lone surrogates: a text frame is UTF-8)."""
    pools = [string.printable, "\x00\x01\x1f\x7f", "\u0301\u200b\u200e\u202e\ufeff", "ü通知ñ", "😀𝟙𐍈",
             "[]{}\"\\:,"]
    return "".join(rng.choice(rng.choice(pools)) for _ in range(size))


def _json_value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 2 ** 63, -(2 ** 70), 10 ** 30])
    if kind == 3:
        return rng.choice([0.5, 1e308, -1e-308])
    if kind in (4, 5):
        return _odd_text(rng, rng.randrange(0, 30))
    if kind == 6:
        return [_json_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {_odd_text(rng, 3): _json_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def fuzz_frames(rng: random.Random, dept: str, user: str, count: int) -> List[Tuple[bytes, bool]]:
    """``count`` frames ``(payload, is_binary)`` a hostile or broken page might send."""
    targets = [dept, f"{dept}_{user}", "All", "other", f"other_{user}", "", "a..b", f"{dept}_x_y"]
    out = []
    for _ in range(count):
        kind = rng.randrange(12)
        if kind == 0:    # a well-formed send (accepted, until the rate limit refuses)
            text = json.dumps({"to": rng.choice(targets), "message": _odd_text(rng, rng.randrange(1, 40))})
        elif kind == 1:  # an object with any fields
            text = json.dumps({rng.choice(["to", "message", "x"]): _json_value(rng) for _ in range(3)})
        elif kind == 2:  # JSON that is not an object
            text = json.dumps(_json_value(rng))
        elif kind == 3:  # broken JSON: a send cut short, or with a byte changed
            whole = json.dumps({"to": dept, "message": _odd_text(rng, 20)})
            cut = rng.randrange(1, len(whole))
            text = whole[:cut] if rng.random() < 0.5 else whole[:cut] + rng.choice("{}[]\",:\\") + whole[cut + 1:]
        elif kind == 4:  # numbers Python will not convert, or will not parse into a float
            text = '{"to": "%s", "message": %s}' % (dept, rng.choice(["9" * rng.randrange(4300, 20000),
                                                                     "1e" + "9" * 400, "-0.0e-99999"]))
        elif kind == 5:  # deep nesting, up to past the frame cap
            n = rng.choice([17, 100, 5000, 60_000, 120_000, 200_000])
            text = rng.choice(["[", '{"a":', '[{"b":']) * n
        elif kind == 6:  # odd Unicode as plain text
            text = _odd_text(rng, rng.randrange(1, 200))
        elif kind == 7:  # heartbeats as old pages wrote them
            text = rng.choice(["ping", " ping", "ping\n", "PING", "pingping"])
        elif kind == 8:  # a binary frame
            out.append((rng.randbytes(rng.randrange(0, 300)), True))
            continue
        elif kind == 9:  # empty and whitespace
            text = rng.choice(["", " ", "\n\t", "{}", "[]", "null"])
        elif kind == 10:  # a large message (too_large) or a large frame (discarded as it arrives)
            text = json.dumps({"to": dept, "message": "x" * rng.choice([65537, 200_000])})
        else:            # NaN, Infinity, duplicate keys, escapes
            text = rng.choice(['{"to": NaN, "message": Infinity}', '{"to": "a", "to": "b", "message": "m"}',
                               '{"to": "\\ud800", "message": "\\u0000"}', '{"to": "\\u0041ll", "message": "m"}'])
        out.append((text.encode("utf-8"), False))
    return out


def _answered(payload: bytes, is_binary: bool) -> bool:
    """Whether the endpoint answers this frame (every frame but a ``ping`` heartbeat)."""
    return is_binary or payload.decode("utf-8").strip() != "ping"


# -- the legacy endpoint


@pytest_twisted.inlineCallbacks
def test_random_legacy_frames_get_their_answer_and_the_socket_stays_open(node):
    rng = random.Random(SEED)
    frames = fuzz_frames(rng, "fzdept", "fred", FRAMES)
    expected = sum(_answered(p, b) for p, b in frames)
    log_before = len(node.log_text())
    page = yield connect_legacy(node.port, "fzdept_fred", token("fred", "fzdept"))
    try:
        for payload, is_binary in frames:
            page.sendMessage(payload, isBinary=is_binary)
        yield wait_for(lambda: len(page.texts) >= expected, timeout=60,
                       what=f"{expected} answers (have {len(page.texts)})")
        assert page.open_now
        errors = page.errors()
        assert {e["error"] for e in errors} <= SEND_ERRORS, {e["error"] for e in errors} - SEND_ERRORS
        # exactly one answer per frame: the refusals, plus the accepted sends echoed back
        assert len(page.texts) == expected
        assert len(errors) < expected  # some sends got through
        assert page.binary_frames == 0
    finally:
        yield page.close()
    assert "Traceback" not in node.log_text()[log_before:]
    yield _still_serves(node)


@pytest_twisted.inlineCallbacks
def test_random_http_bodies_and_headers_get_a_contract_answer(node):
    rng = random.Random(SEED + 1)
    frames = fuzz_frames(rng, "fzhttp", "hana", HTTP_REQUESTS)
    good = token("hana", "fzhttp")
    auths = [f"Bearer {good}", f"Bearer {good}", f"Bearer {good}x", "Bearer", "Basic dXNlcjpwdw==", "",
             "Bearer " + "e30." * 2000, f"bearer  {good}  "]
    statuses = {}
    sem = defer.DeferredSemaphore(16)

    def one(payload):
        return post_send(node.port, None, raw=payload, authorization=rng.choice(auths))

    log_before = len(node.log_text())
    results = yield defer.gatherResults([sem.run(one, p) for p, _ in frames])
    for status, _, body in results:
        statuses[status] = statuses.get(status, 0) + 1
        if status == 200:
            assert set(body) >= {"id", "message", "seq"}
        else:
            assert status in (400, 401, 403, 413, 429), (status, body)
            assert body["error"] in SEND_ERRORS | {"deptcast.error.invalid_token"}, body
    assert 200 in statuses and 400 in statuses and 401 in statuses, statuses
    assert "Traceback" not in node.log_text()[log_before:]
    yield _still_serves(node)


DIGITISH = ["0000000000000042", "42", "", "²", "١٢", "-1", "1e3", " 1", "x" * 100]


@pytest_twisted.inlineCallbacks
def test_random_procedure_arguments_get_a_contract_error(node):
    rng = random.Random(SEED + 2)
    client = yield connect(node.url, token("wanda", "fzwamp"))
    errors = set()
    log_before = len(node.log_text())
    try:
        for _ in range(WAMP_CALLS):
            choice = rng.randrange(3)
            value = lambda: rng.choice([_json_value(rng), rng.choice(DIGITISH)])  # noqa: E731 (a new value per call)
            if choice == 0:
                d = client.call("deptcast.send", value(), value())
            elif choice == 1:
                d = client.call("deptcast.history", value(), value(), value(), value())
            else:
                d = client.call("deptcast.presence.online", value())
            try:
                yield d
            except ApplicationError as e:
                errors.add(e.error)
    finally:
        yield client.close()
    # "unavailable" would mean an internal failure reached the client; runtime_error, a leak
    assert errors <= SEND_ERRORS, errors - SEND_ERRORS
    assert "Traceback" not in node.log_text()[log_before:]
    yield _still_serves(node)


# -- what RFC 6455 answers with a close


def test_protocol_violations_close_only_their_connection(node):
    cases = {
        "a text frame that is not UTF-8 (1007)": (b"\x81", b"\xff\xfe\xfd"),
        "reserved bits set (1002)": (b"\xf1", b"ping"),
        "an unknown opcode (1002)": (b"\x83", b"x"),
    }
    for what, (first, payload) in cases.items():
        sock, _ = raw.websocket_upgrade(node.port, f"/webSocket/fzraw_rita?token={token('rita', 'fzraw')}")
        try:
            mask = b"\x01\x02\x03\x04"
            sock.sendall(first + bytes([0x80 | len(payload)]) + mask + raw.masked(payload, mask))
            code = raw.read_close(sock, 10)
            # the close code, or (autobahn fails a connection by dropping it) a TCP close
            assert code in ((1007, 0) if "1007" in what else (1002, 0)), (what, code)
        finally:
            sock.close()
    # an unmasked client frame (1002)
    sock, _ = raw.websocket_upgrade(node.port, f"/webSocket/fzraw_rita?token={token('rita', 'fzraw')}")
    try:
        sock.sendall(b"\x81\x04ping")
        assert raw.read_close(sock, 10) in (1002, 0)
    finally:
        sock.close()
    _blocking_still_serves(node)


def _blocking_still_serves(node):
    assert node.running
    status, body = raw.http(node.port, "POST", "/api/send", json.dumps({"to": "fzalive", "message": "x"}).encode(),
                            {"Authorization": f"Bearer {token('vic', 'fzalive')}"})
    assert status == 200, body


@defer.inlineCallbacks
def _still_serves(node):
    assert node.running
    client = yield connect(node.url, token("vera", "fzalive"))
    try:
        yield client.listen("deptcast.dept.fzalive")
        envelope = yield client.call("deptcast.send", "fzalive", "after the fuzz")
        yield wait_for(lambda: client.events["deptcast.dept.fzalive"] == [envelope], what="the echo")
    finally:
        yield client.close()
