"""Unit tests of the web transport's HTTP resources in memory: ``POST /api/send``
(:class:`HttpSendResource`) and ``/dev/token`` (:class:`DevTokenResource`), with Twisted's
``DummyRequest``, a :class:`Runtime` on a ``task.Clock`` and the real
:class:`MessageService` over a fake store; two tests go through treq's ``StubTreq`` for a
real ``twisted.web`` request (headers and body as the server parses them)."""

import io
import json
import sys
import time
from typing import Any, Dict, List, Optional

from treq.testing import StubTreq
from twisted.internet import task
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import ConnectionDone
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.error import UnsupportedMethod
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from components.core.errors import (INVALID_FRAME, INVALID_TOKEN, NOT_AUTHORIZED, RATE_LIMITED, TOKEN_EXPIRED,
                                    TOO_LARGE, UNAVAILABLE)
from components.core.frames import frame_cap
from components.core.names import MEMBER, PUBLISHER
from components.core.settings import ConfigError
from components.core.tokens import Identity, issue_token, verify_token
from components.edge.devtoken import DevTokenResource
from components.edge.httpapi import READY_TIMEOUT, HttpSendResource
from components.service.messaging import RATE_LIMITED_PACE, MessageService
from components.service.runtime import Runtime
from tests.support.fakes import SECRET, FakePublish, FakeStore, RecordingLog, make_settings

LOOPBACK = IPv4Address("TCP", "127.0.0.1", 40000)


def token(user: str = "bob", dept: str = "hr", role: str = MEMBER, **kwargs: Any) -> str:
    return issue_token(SECRET, user, dept, role, **kwargs)


def make_runtime(**settings: Any) -> Runtime:
    rt = Runtime(clock=task.Clock())
    rt._settings = make_settings(**settings)   # instead of the environment
    return rt


def request(method: bytes, body: bytes = b"", authorization: Optional[str] = None,
            client: Any = LOOPBACK) -> DummyRequest:
    r = DummyRequest([b""])
    r.method = method
    r.content = io.BytesIO(body)
    r.client = client
    r.requestHeaders.setRawHeaders(b"host", [b"127.0.0.1:8080"])
    if authorization is not None:
        r.requestHeaders.setRawHeaders(b"authorization", [authorization.encode("latin-1")])
    return r


def render(resource: Any, r: DummyRequest) -> DummyRequest:
    result = resource.render(r)
    if result is not NOT_DONE_YET:
        r.write(result)
        r.finish()
    return r


def answer(r: DummyRequest) -> Dict[str, Any]:
    assert r.finished == 1, "the request was not finished"
    assert r.responseHeaders.getRawHeaders(b"content-type") == [b"application/json; charset=utf-8"]
    assert r.responseHeaders.getRawHeaders(b"cache-control") == [b"no-store"]
    return json.loads(b"".join(r.written))


def header(r: DummyRequest, name: bytes) -> Optional[bytes]:
    values = r.responseHeaders.getRawHeaders(name)
    return values[0] if values else None


class HttpSendTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.runtime = make_runtime(rate=1.0, burst=2, max_message_bytes=64)
        self.clock = self.runtime.clock
        self.store = FakeStore(auto=True)
        self.publish = FakePublish()
        self.service = MessageService(self.runtime.settings(), self.store, self.publish, monotonic=self.clock.seconds,
                                      clock=self.clock)
        self.service.store_ready = True
        self.runtime.messages.set(self.service)
        self.resource = HttpSendResource(rt=self.runtime)
        self.resource.log = RecordingLog()
        self.resource._refusals._log = self.resource.log  # the resource's own refusal lines, recorded

    def send(self, frame: Any, tok: Optional[str] = None, authorization: Optional[str] = None) -> DummyRequest:
        body = frame if isinstance(frame, bytes) else json.dumps(frame).encode()
        if authorization is None:
            authorization = f"Bearer {tok or token()}"
        return render(self.resource, request(b"POST", body, authorization))

    def assertRefused(self, r: DummyRequest, status: int, uri: str) -> Dict[str, Any]:
        self.assertEqual(r.responseCode, status)
        body = answer(r)
        self.assertEqual(body["error"], uri)
        self.assertIsInstance(body["detail"], str)
        return body


class HttpSendTests(HttpSendTestCase):
    def test_200_with_the_envelope(self):
        r = self.send({"to": "hr_alice", "message": "hi"})
        self.assertEqual(r.responseCode, 200)
        envelope = answer(r)
        self.assertEqual((envelope["target"], envelope["sender"], envelope["sender_dept"], envelope["message"]),
                         ("hr_alice", "bob", "hr", "hi"))
        self.assertEqual(self.publish.published, [("deptcast.user.hr_alice", envelope)])
        self.assertEqual(self.store.appends[0].sender, Identity("bob", "hr", MEMBER))

    def test_a_publisher_token_sends_anywhere(self):
        r = self.send({"to": "All", "message": "fire drill"}, token("ops", "mgmt", PUBLISHER))
        self.assertEqual((r.responseCode, answer(r)["target"]), (200, "All"))

    def test_401_without_a_valid_bearer_token(self):
        for authorization in ("", "Basic Ym9iOnB3", "Bearer", "Bearer not.a.token",
                              "Bearer " + issue_token("another-secret-" + "z" * 32, "bob", "hr")):
            r = self.send({"to": "hr", "message": "x"}, authorization=authorization)
            self.assertRefused(r, 401, INVALID_TOKEN)
            self.assertEqual(header(r, b"www-authenticate"), b'Bearer realm="deptcast"')
        expired = token(now=time.time() - 7200, ttl=60)
        r = self.send({"to": "hr", "message": "x"}, expired)
        self.assertRefused(r, 401, TOKEN_EXPIRED)
        self.assertEqual(header(r, b"www-authenticate"), b'Bearer realm="deptcast"')
        self.assertEqual(self.store.appends, [])

    def test_no_header_at_all_is_401(self):
        r = render(self.resource, request(b"POST", b'{"to": "hr", "message": "x"}'))
        self.assertRefused(r, 401, INVALID_TOKEN)

    def test_400_for_a_body_that_is_not_a_json_object(self):
        for body in (b"", b"ping", b"not json", b"[1, 2]", b'"text"', b"\xff\xfe", b'{"to": "hr", '):
            self.assertRefused(self.send(body), 400, INVALID_FRAME)
        self.assertEqual(self.store.appends, [])

    def test_400_for_bad_fields(self):
        for frame in ({"message": "x"}, {"to": "hr"}, {"to": 5, "message": "x"}, {"to": "hr", "message": ""},
                      {"to": "a..b", "message": "x"}):
            self.assertRefused(self.send(frame), 400, INVALID_FRAME)
        self.assertEqual(self.store.appends, [])

    def test_403_for_a_target_the_token_may_not_send_to(self):
        for to in ("cardio", "All", "cardio_bob"):
            self.assertRefused(self.send({"to": to, "message": "x"}), 403, NOT_AUTHORIZED)
        self.assertEqual(self.store.appends, [])

    def test_413_for_a_message_over_the_limit(self):
        self.assertRefused(self.send({"to": "hr", "message": "x" * 65}), 413, TOO_LARGE)
        self.assertEqual(self.send({"to": "hr", "message": "x" * 64}).responseCode, 200)

    def test_413_for_a_body_over_the_cap_before_it_is_parsed(self):
        cap = frame_cap(64)
        padded = json.dumps({"to": "hr", "message": "x"}).encode()
        self.assertEqual(self.send(padded + b" " * (cap - len(padded))).responseCode, 200)
        body = self.assertRefused(self.send(padded + b" " * (cap + 1 - len(padded))), 413, TOO_LARGE)
        self.assertIn(f"at most {cap}", body["detail"])
        # not even read past the cap: a body of 100 times the cap costs the same
        r = request(b"POST", b"[" * (100 * cap), f"Bearer {token()}")
        render(self.resource, r)
        self.assertEqual((r.responseCode, r.content.tell()), (413, cap + 1))
        self.assertEqual(len(self.store.appends), 1)

    def test_429_with_retry_after_when_the_rate_is_exceeded(self):
        self.assertEqual(self.send({"to": "hr", "message": "1"}).responseCode, 200)
        self.assertEqual(self.send({"to": "hr", "message": "2"}).responseCode, 200)
        r = self.send({"to": "hr", "message": "3"})
        self.assertEqual(r.written, [])          # a rate_limited answer comes after a short pace
        self.clock.advance(RATE_LIMITED_PACE)
        self.assertRefused(r, 429, RATE_LIMITED)
        self.assertEqual(header(r, b"retry-after"), b"1")
        self.assertEqual(len(self.store.appends), 2)

    def test_503_without_internals_when_the_store_fails(self):
        self.store.auto = False
        r = self.send({"to": "hr", "message": "x"})
        self.assertEqual(r.written, [])
        self.store.appends[0].deferred.errback(RuntimeError("connection to 10.9.8.7:5432 refused"))
        body = self.assertRefused(r, 503, UNAVAILABLE)
        self.assertNotIn("10.9.8.7", json.dumps(body))
        self.assertEqual(header(r, b"retry-after"), b"2")
        # the send path logged it (once per spell of failures), not the resource
        self.assertEqual(self.resource.log.records, [])
        self.flushLoggedErrors(RuntimeError)
        self.assertEqual(self.publish.calls, [])

    def test_the_token_is_never_logged(self):
        tok = token("ops", "mgmt", PUBLISHER)
        seen: List[Dict[str, Any]] = []
        globalLogPublisher.addObserver(seen.append)   # every logger of the process
        try:
            self.send({"to": "nowhere..", "message": "x"}, tok)
            self.send({"to": "hr", "message": "x"}, authorization="Bearer " + tok[:-4] + "AAAA")
        finally:
            globalLogPublisher.removeObserver(seen.append)
        lines = [(formatEvent(e) or "") + repr(e) for e in seen] + \
                [rec.text + repr(rec.fields) for rec in self.resource.log.records]
        self.assertEqual(len(lines), 2)  # each refusal's first line
        signature = tok.split(".")[2]
        for line in lines:
            self.assertNotIn(signature, line)

    def test_a_client_that_went_away_gets_nothing_written(self):
        self.store.auto = False
        r = self.send({"to": "hr", "message": "x"})
        r.processingFailed(Failure(ConnectionDone("the client hung up")))
        self.store.appends[0].deferred.callback(self.store.envelope())
        self.assertEqual((r.written, r.finished), ([], 0))
        self.assertEqual(len(self.publish.published), 1)   # sent all the same

    def test_only_post(self):
        self.assertRaises(UnsupportedMethod, self.resource.render, request(b"GET"))

    def test_a_deeply_nested_body_is_refused_as_invalid_frame(self):
        rt = make_runtime()             # the default limits: a body of 100,000 '[' is under the cap
        self.assertLess(100_000, frame_cap(rt.settings().max_message_bytes))
        service = MessageService(rt.settings(), self.store, self.publish)
        service.store_ready = True
        rt.messages.set(service)
        resource = HttpSendResource(rt=rt)
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(1000)     # never the router worker's 100,000 here: that would crash pytest
        try:
            r = render(resource, request(b"POST", b"[" * 100_000, f"Bearer {token()}"))
        finally:
            sys.setrecursionlimit(limit)
        self.assertRefused(r, 400, INVALID_FRAME)


class HttpSendReadinessTests(HttpSendTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.runtime.messages.clear()

    def test_503_after_the_timeout_when_the_service_is_not_ready(self):
        r = self.send({"to": "hr", "message": "x"})
        self.clock.advance(READY_TIMEOUT - 0.001)
        self.assertEqual(r.written, [])
        self.clock.advance(0.001)
        self.assertRefused(r, 503, UNAVAILABLE)
        self.assertEqual(header(r, b"retry-after"), b"1")
        self.assertEqual(self.store.appends, [])
        # refused as the contract says, not logged as a failure
        self.assertEqual([rec.level for rec in self.resource.log.records], ["info"])

    def test_a_request_waits_for_the_service_to_start(self):
        r = self.send({"to": "hr", "message": "x"})
        self.clock.advance(READY_TIMEOUT / 2)
        self.runtime.messages.set(self.service)
        self.assertEqual(r.responseCode, 200)
        self.assertEqual(answer(r)["message"], "x")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_token_and_body_are_checked_before_waiting(self):
        r = self.send({"to": "hr", "message": "x"}, authorization="Bearer nope")
        self.assertRefused(r, 401, INVALID_TOKEN)
        self.assertRefused(self.send(b"[]"), 400, INVALID_FRAME)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_node_with_bad_settings_answers_503(self):
        rt = Runtime(clock=task.Clock())
        rt._error = ConfigError("DEPTCAST_RATE='fast' is not a number")
        resource = HttpSendResource(rt=rt)
        r = render(resource, request(b"POST", b'{"to": "hr", "message": "x"}', f"Bearer {token()}"))
        self.assertRefused(r, 503, UNAVAILABLE)


class HttpSendOverRealRequestsTests(HttpSendTestCase):
    """Through ``twisted.web.server.Request`` (treq's in-memory HTTP): real header parsing."""

    def test_200_and_401(self):
        stub = StubTreq(self.resource)
        d = stub.post("http://node/api/send", data=b'{"to": "hr", "message": "hello"}',
                      headers={"Authorization": f"bearer {token()}", "Content-Type": "application/json"})
        stub.flush()
        response = self.successResultOf(d)
        self.assertEqual(response.code, 200)
        self.assertEqual(self.successResultOf(stub.json_content(response))["message"], "hello")
        d = stub.post("http://node/api/send", data=b'{"to": "hr", "message": "hello"}')
        stub.flush()
        response = self.successResultOf(d)
        self.assertEqual(response.code, 401)
        self.assertEqual(response.headers.getRawHeaders("www-authenticate"), ['Bearer realm="deptcast"'])
        self.assertEqual(self.successResultOf(stub.json_content(response))["error"], INVALID_TOKEN)


class DevTokenTests(SynchronousTestCase):
    def resource(self, **settings: Any) -> DevTokenResource:
        resource = DevTokenResource(rt=make_runtime(**settings))
        resource.log = RecordingLog()
        return resource

    def post(self, resource: DevTokenResource, body: Any, client: Any = LOOPBACK) -> DummyRequest:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return render(resource, request(b"POST", raw, client=client))

    def test_404_outside_quick_start_mode(self):
        resource = self.resource(dev=False)
        for r in (render(resource, request(b"GET")), self.post(resource, {"user": "bob", "dept": "hr"})):
            self.assertEqual(r.responseCode, 404)
            self.assertEqual(answer(r)["dev"], False)
            self.assertNotIn("token", answer(r))

    def test_404_when_the_settings_are_bad(self):
        rt = Runtime(clock=task.Clock())
        rt._error = ConfigError("no JWT secret")
        r = render(DevTokenResource(rt=rt), request(b"GET"))
        self.assertEqual(r.responseCode, 404)

    def test_403_off_the_loopback_interface(self):
        resource = self.resource(dev=True)
        for client in (IPv4Address("TCP", "10.0.0.5", 5000), IPv6Address("TCP", "fe80::1", 5000),
                       IPv4Address("TCP", "127.0.0.2", 5000)):
            for r in (render(resource, request(b"GET", client=client)),
                      self.post(resource, {"user": "bob", "dept": "hr"}, client)):
                self.assertEqual(r.responseCode, 403)
                self.assertNotIn("token", answer(r))

    def test_200_on_loopback_in_quick_start_mode(self):
        resource = self.resource(dev=True)
        for client in (LOOPBACK, IPv6Address("TCP", "::1", 5000)):
            r = render(resource, request(b"GET", client=client))
            self.assertEqual((r.responseCode, answer(r)), (200, {"dev": True}))
        r = self.post(resource, {"user": "bob", "dept": "hr"})
        self.assertEqual(r.responseCode, 200)
        self.assertEqual(verify_token(SECRET, answer(r)["token"]), Identity("bob", "hr", MEMBER))
        r = self.post(resource, {"user": "ops", "dept": "mgmt", "role": "publisher"})
        self.assertEqual(verify_token(SECRET, answer(r)["token"]), Identity("ops", "mgmt", PUBLISHER))

    def test_400_for_bad_input(self):
        resource = self.resource(dev=True)
        for body in (b"not json", b"[1]", b'"bob"', {"user": "bob"}, {"user": "b_ob", "dept": "hr"},
                     {"user": "bob", "dept": "hr", "role": "admin"}, {"user": "bob", "dept": "a..b"},
                     b"[" * 4000):
            r = self.post(resource, body)
            self.assertEqual(r.responseCode, 400, body)
            self.assertEqual(answer(r)["error"], INVALID_FRAME)
        # past the form's 4096 bytes: too large, not parsed
        r = self.post(resource, b'{"user": "bob", "dept": "hr", "pad": "' + b"x" * 5000 + b'"}')
        self.assertEqual((r.responseCode, answer(r)["error"]), (413, TOO_LARGE))

    def test_an_empty_body_is_an_empty_form(self):
        r = self.post(self.resource(dev=True), b"")
        self.assertEqual((r.responseCode, answer(r)["error"]), (400, INVALID_FRAME))

    def test_the_mode_is_announced_with_a_warning(self):
        log = RecordingLog()
        self.patch(DevTokenResource, "log", log)
        DevTokenResource(rt=make_runtime(dev=False))
        self.assertEqual(log.records, [])
        DevTokenResource(rt=make_runtime(dev=True))
        self.assertEqual(len(log.lines("warn")), 1)
        self.assertIn("quick-start sign-in is ON", log.lines("warn")[0])
