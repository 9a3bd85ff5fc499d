"""``POST /api/send`` against a real node: sends like ``deptcast.send`` and refuses likewise.

Each refusal is followed by a marker send, so "nothing was published" is proved, not hoped.
"""

import json
import time

import pytest_twisted
from twisted.internet import defer

from components.core.tokens import issue_token
from tests.support.nodes import token
from tests.support.legacy import connect_legacy, http_request, post_send
from tests.support.nodes import TEST_SECRET
from tests.support.wamp import connect, wait_for


@defer.inlineCallbacks
def _listener(node, user: str, dept: str, *topics: str):
    client = yield connect(node.url, token(user, dept, "publisher"))
    for topic in topics:
        yield client.listen(topic)
    return client


@pytest_twisted.inlineCallbacks
def test_publisher_token_sends_to_department_all_and_user(node):
    wamp = yield _listener(node, "h1watch", "h1hq", "deptcast.dept.h1ops", "deptcast.all")
    legacy = yield connect_legacy(node.port, "h1ops_una", token("una", "h1ops"))
    try:
        pub = token("backend", "h1hq", "publisher")
        status, headers, body = yield post_send(node.port, {"to": "h1ops", "message": "from java"}, pub)
        assert status == 200, body
        assert headers.getRawHeaders(b"content-type") == [b"application/json; charset=utf-8"]
        assert (body["scope"], body["target"], body["sender"], body["sender_dept"], body["message"]) == \
            ("dept", "h1ops", "backend", "h1hq", "from java")
        assert isinstance(body["id"], str) and isinstance(body["ts"], int)
        status, _, body2 = yield post_send(node.port, {"to": "All", "message": "to all"}, pub)
        assert status == 200 and body2["scope"] == "all"
        status, _, body3 = yield post_send(node.port, {"to": "h1ops_una", "message": "to una"}, pub)
        assert status == 200 and body3["scope"] == "user"
        yield wait_for(lambda: "to all" in wamp.messages("deptcast.all"), what="All over WAMP")
        yield wait_for(lambda: "to una" in legacy.messages(), what="the direct message")
        # each exactly once, with the same envelope the API answered
        assert wamp.events["deptcast.dept.h1ops"] == [body]
        assert wamp.events["deptcast.all"] == [body2]
        assert legacy.texts == ["from java", "to all", "to una"]
    finally:
        yield wamp.close()
        yield legacy.close()


@pytest_twisted.inlineCallbacks
def test_member_token_follows_member_rules(node):
    wamp = yield _listener(node, "h2watch", "h2hq", "deptcast.dept.h2ops", "deptcast.dept.h2other", "deptcast.all")
    try:
        member = token("vic", "h2ops")
        status, _, body = yield post_send(node.port, {"to": "h2ops", "message": "own dept"}, member)
        assert status == 200 and body["sender"] == "vic"
        for to in ("h2other", "All", "h2other_wes"):
            status, _, body = yield post_send(node.port, {"to": to, "message": "not mine"}, member)
            assert status == 403, to
            assert body["error"] == "deptcast.error.not_authorized" and body["detail"], body
        status, _, _ = yield post_send(node.port, {"to": "h2ops", "message": "marker"}, member)
        assert status == 200
        yield wait_for(lambda: "marker" in wamp.messages("deptcast.dept.h2ops"), what="marker")
        assert wamp.messages("deptcast.dept.h2ops") == ["own dept", "marker"]
        assert wamp.messages("deptcast.dept.h2other") == [] and wamp.messages("deptcast.all") == []
    finally:
        yield wamp.close()


@pytest_twisted.inlineCallbacks
def test_authentication_refusals(node):
    body = {"to": "h3ops", "message": "x"}
    expired = issue_token(TEST_SECRET, "xia", "h3ops", "publisher", ttl=60, now=time.time() - 3600)
    foreign = issue_token("some-other-secret-" + "q" * 40, "xia", "h3ops", "publisher")
    cases = [
        (dict(), "deptcast.error.invalid_token"),                               # no header
        (dict(authorization="Basic eGlhOnB3"), "deptcast.error.invalid_token"),  # not a bearer token
        (dict(token="not-a-jwt"), "deptcast.error.invalid_token"),
        (dict(token=foreign), "deptcast.error.invalid_token"),
        (dict(token=expired), "deptcast.error.token_expired"),
    ]
    for kwargs, uri in cases:
        status, headers, answer = yield post_send(node.port, body, **kwargs)
        assert status == 401, kwargs
        assert answer["error"] == uri and answer["detail"]
        assert headers.getRawHeaders(b"www-authenticate") == [b'Bearer realm="deptcast"']


@pytest_twisted.inlineCallbacks
def test_bad_bodies_are_refused_and_nothing_is_published(node):
    wamp = yield _listener(node, "h4watch", "h4hq", "deptcast.dept.h4ops")
    try:
        pub = token("yan", "h4hq", "publisher")
        cases = [
            (b"{not json", 400, "deptcast.error.invalid_frame"),
            (b"[]", 400, "deptcast.error.invalid_frame"),
            (b"", 400, "deptcast.error.invalid_frame"),
            (json.dumps({"message": "no to"}).encode(), 400, "deptcast.error.invalid_frame"),
            (json.dumps({"to": "h4ops"}).encode(), 400, "deptcast.error.invalid_frame"),
            (json.dumps({"to": "h4ops", "message": ""}).encode(), 400, "deptcast.error.invalid_frame"),
            (json.dumps({"to": "no such!", "message": "x"}).encode(), 400, "deptcast.error.invalid_frame"),
            (json.dumps({"to": "h4ops", "message": "m" * (64 * 1024 + 1)}).encode(), 413, "deptcast.error.too_large"),
            (json.dumps({"to": "h4ops", "message": "m" * (1024 * 1024)}).encode(), 413, "deptcast.error.too_large"),
        ]
        for raw, status, uri in cases:
            got, _, answer = yield post_send(node.port, None, pub, raw=raw)
            assert (got, answer["error"]) == (status, uri), raw[:60]
            assert answer["detail"]
        status, _, _ = yield post_send(node.port, {"to": "h4ops", "message": "m" * 64 * 1024}, pub)
        assert status == 200  # exactly at the limit
        status, _, _ = yield post_send(node.port, {"to": "h4ops", "message": "marker"}, pub)
        yield wait_for(lambda: "marker" in wamp.messages("deptcast.dept.h4ops"), what="marker")
        assert [len(m) for m in wamp.messages("deptcast.dept.h4ops")] == [64 * 1024, len("marker")]
    finally:
        yield wamp.close()


@pytest_twisted.inlineCallbacks
def test_rate_limit_answers_429(node):
    """The default limit lets a member send a burst of 50, then 20 per second (publishers,
    backends, have a bucket of their own)."""
    member = token("zoe", "h5ops")
    results = yield defer.gatherResults([
        post_send(node.port, {"to": "h5ops", "message": f"m{i}"}, member) for i in range(80)])
    statuses = [status for status, _, _ in results]
    assert statuses.count(200) >= 50
    limited = [(headers, body) for status, headers, body in results if status == 429]
    assert limited, statuses
    headers, body = limited[0]
    assert body["error"] == "deptcast.error.rate_limited"
    assert headers.getRawHeaders(b"retry-after") == [b"1"]


@pytest_twisted.inlineCallbacks
def test_only_post(node):
    status, headers, _ = yield http_request("GET", f"http://127.0.0.1:{node.port}/api/send")
    assert status == 405
    assert b"POST" in b",".join(headers.getRawHeaders(b"allow") or [])
