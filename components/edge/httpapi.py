"""``POST /api/send`` and ``POST /api/send_batch``: the send API for backends that cannot
speak WAMP; ``POST /api/revoke`` for offboarding systems (an ``admin`` token, the body
``{"user_key": "<dept>_<user>"}``; the meaning of ``deptcast.admin.revoke``, answered
``{"user_key", "at"}``; 403 for another role).

Mounted in the node's web transport as a Twisted resource. The caller authenticates with a
deptcast token (``Authorization: Bearer <token>``, any role: a ``publisher`` token for a
backend that notifies any department, a ``member`` token for one acting as a user); the body
is ``{"to": ..., "message": ...}``, with an optional ``Idempotency-Key`` header (the send's
``key``: a retry is answered the first envelope); ``/api/send_batch`` takes
``{"items": [...]}`` and answers ``{"results": [...]}`` (``deptcast.send_batch``). The request goes through the node's
:class:`~components.service.messaging.MessageService`, in this process, so the rules, error
URIs, rate limit, store and publish are exactly those of ``deptcast.send``.

Answers: 200 with the envelope; else ``{"error": <uri>, "detail": <text>}`` with 400
``invalid_frame``, 401 ``invalid_token``/``token_expired``, 403 ``not_authorized``,
413 ``too_large``, 429 ``rate_limited``, 503 ``unavailable``.

Crossbar's HTTP bridge ``publisher`` service is not used: it publishes straight to a topic,
past validation, authorization and the store.
"""

from typing import Any, Dict, Optional, cast

import txaio
from twisted.internet import defer
from twisted.python.failure import Failure
from twisted.web import resource, server

from components.core import frames
from components.core.errors import INVALID_FRAME, NOT_AUTHORIZED, UNAVAILABLE, Refused
from components.core.jsonlimits import load_json
from components.core.metrics import count_refusal
from components.core.tokens import Identity
from components.edge.http import answer_when_done, bearer_token, error_body, header, peer_host
from components.service.refusals import RefusalLog
from components.service.runtime import Runtime, runtime

txaio.use_twisted()  # a Twisted module: its txaio loggers are Twisted's

#: seconds a request waits for a starting node's message service
READY_TIMEOUT = 10.0


class _HttpSendPath(resource.Resource):
    """What the send paths share: the token, the body, the answer (a subclass says what
    the body means and which call of the message service takes it)."""

    isLeaf = True
    log = txaio.make_logger()
    path = "/api/send"

    def __init__(self, extra: Optional[Dict[str, Any]] = None, rt: Optional[Runtime] = None) -> None:
        super().__init__()
        self._runtime = rt or runtime()
        self._settings = self._runtime.settings_or_log(self.log, "http api")
        # requests refused before the send path (token, body); the send path counts its own
        self._refusals = RefusalLog(self.log, "deptcast http api", "HTTP request", "HTTP requests")
        if self._settings is not None:
            self._body_cap = self.body_cap(self._settings.max_message_bytes)
            self.log.info("deptcast http api: POST {path} ready", path=self.path)

    def body_cap(self, max_message_bytes: int) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def call(self, service: Any, identity: Identity, args: Any) -> defer.Deferred:
        """Call the message service with what :meth:`parse` read."""
        raise NotImplementedError  # pragma: no cover - abstract

    def render_POST(self, request) -> Any:
        if self._settings is None:
            return error_body(request, Refused(UNAVAILABLE, "the HTTP API is misconfigured"))
        try:
            token = bearer_token(header(request, b"authorization"))
            # never log the token: it is a bearer credential
            identity = self._runtime.sessions.grant(self._settings.jwt_secret, token,
                                                    max_ttl=self._settings.max_token_ttl).identity
            body = request.content.read(self._body_cap + 1)
            if len(body) > self._body_cap:
                raise frames.oversize_refusal(len(body), self._body_cap)
            args = self.parse(body, request)
        except Refused as e:
            count_refusal("http", e.uri)
            self._refusals.refused(e.uri, peer_host(request), e.detail)
            return error_body(request, e)

        d = self._runtime.messages.get(READY_TIMEOUT)
        d.addErrback(self._not_ready, identity.key)
        d.addCallback(lambda service: self.call(service, identity, args))
        # a Refused was counted and logged by the send path
        answer_when_done(request, d, lambda failure: self._refusals.failed(failure, identity.key),
                         "the message could not be sent; retry shortly")
        return server.NOT_DONE_YET

    def parse(self, body: bytes, request: Any) -> Any:  # pragma: no cover - abstract
        """The call's arguments from ``body`` and the headers.

        :raises Refused: ``invalid_frame`` for a malformed body
        """
        raise NotImplementedError

    def _not_ready(self, failure: Failure, who: str) -> Failure:
        failure.trap(Refused)  # the node is starting: the send path never saw this request
        refusal = cast(Refused, failure.value)  # trapped
        self._refusals.refused(refusal.uri, who, refusal.detail)
        return failure


class HttpSendResource(_HttpSendPath):
    """``/api/send``: one POST, one message; an ``Idempotency-Key`` header is the send's
    ``key`` (a retry with the same key is answered the first envelope)."""

    def body_cap(self, max_message_bytes: int) -> int:
        # the body is a JSON frame like a legacy one: the same bound applies (a larger body
        # is refused, 413, before it is read: components.upstream.web)
        return frames.frame_cap(max_message_bytes)

    def parse(self, body: bytes, request: Any) -> Any:
        return frames.parse_send_body(body, self._body_cap), header(request, b"idempotency-key")

    def call(self, service: Any, identity: Identity, args: Any) -> defer.Deferred:
        frame, key = args
        return service.send(identity, frame.to, frame.message, key, interface="http")


class HttpSendBatchResource(_HttpSendPath):
    """``/api/send_batch``: ``{"items": [{"to", "message", "key"?}, ...]}`` (at most 1,000)
    answered ``{"results": [...]}``, one per item in order, as ``deptcast.send_batch``."""

    path = "/api/send_batch"

    def body_cap(self, max_message_bytes: int) -> int:
        # as a WAMP call on /ws: a batch is bounded like any one WAMP message
        return frames.wamp_message_cap(max_message_bytes)

    def parse(self, body: bytes, request: Any) -> Any:
        parsed = load_json(body)
        if not isinstance(parsed, dict) or not isinstance(parsed.get("items"), list):
            raise Refused(INVALID_FRAME, 'the body must be a JSON object {"items": [...]}')
        return parsed["items"]

    def call(self, service: Any, identity: Identity, args: Any) -> defer.Deferred:
        d = service.send_batch(identity, args)
        return d.addCallback(lambda results: {"results": results})


#: the largest body /api/revoke reads: ``{"user_key": ...}``
REVOKE_BODY_CAP = 1024


class HttpRevokeResource(resource.Resource):
    """``/api/revoke``: one POST revokes one user (``admin`` tokens only)."""

    isLeaf = True
    log = txaio.make_logger()

    def __init__(self, extra: Optional[Dict[str, Any]] = None, rt: Optional[Runtime] = None) -> None:
        super().__init__()
        self._runtime = rt or runtime()
        self._settings = self._runtime.settings_or_log(self.log, "http api")
        self._refusals = RefusalLog(self.log, "deptcast http api", "HTTP request", "HTTP requests")

    def render_POST(self, request) -> Any:
        if self._settings is None:
            return error_body(request, Refused(UNAVAILABLE, "the HTTP API is misconfigured"))
        try:
            token = bearer_token(header(request, b"authorization"))
            identity = self._runtime.sessions.grant(self._settings.jwt_secret, token,
                                                    max_ttl=self._settings.max_token_ttl).identity
            if not identity.is_admin:
                raise Refused(NOT_AUTHORIZED, "revoking takes an admin token")
            body = load_json(request.content.read(REVOKE_BODY_CAP + 1), max_bytes=REVOKE_BODY_CAP)
            if not isinstance(body, dict) or not isinstance(body.get("user_key"), str):
                raise Refused(INVALID_FRAME, 'the body must be a JSON object {"user_key": "<dept>_<user>"}')
        except Refused as e:
            count_refusal("http", e.uri)
            self._refusals.refused(e.uri, peer_host(request), e.detail)
            return error_body(request, e)

        d = self._runtime.messages.get(READY_TIMEOUT)
        d.addCallback(lambda service: self._runtime.sessions.record_revocation(service.store, body["user_key"]))
        answer_when_done(request, d, lambda failure: self._refusals.failed(failure, identity.key),
                         "the revocation could not be stored; retry shortly")
        return server.NOT_DONE_YET
