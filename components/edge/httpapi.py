"""``POST /api/send``: the send API for backends that cannot speak WAMP; ``POST /api/revoke``
for offboarding systems (an ``admin`` token, the body ``{"user_key": "<dept>_<user>"}``; the
meaning of ``deptcast.admin.revoke``, answered ``{"user_key", "at"}``; 403 for another role).

Mounted in the node's web transport as a Twisted resource. The caller authenticates with a
deptcast token (``Authorization: Bearer <token>``, any role: a ``publisher`` token for a
backend that notifies any department, a ``member`` token for one acting as a user); the body
is ``{"to": ..., "message": ...}``. The request goes through the node's
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
from twisted.python.failure import Failure
from twisted.web import resource, server

from components.core import frames
from components.core.errors import UNAVAILABLE, Refused
from components.core.metrics import count_refusal
from components.core.errors import INVALID_FRAME, NOT_AUTHORIZED
from components.core.jsonlimits import load_json
from components.edge.http import bearer_token, error_body, header, json_body, peer_host
from components.service.refusals import RefusalLog
from components.service.runtime import Runtime, runtime

txaio.use_twisted()  # a Twisted module: its txaio loggers are Twisted's

#: seconds a request waits for a starting node's message service
READY_TIMEOUT = 10.0


class HttpSendResource(resource.Resource):
    """``/api/send``: one POST, one message."""

    isLeaf = True
    log = txaio.make_logger()

    def __init__(self, extra: Optional[Dict[str, Any]] = None, rt: Optional[Runtime] = None) -> None:
        super().__init__()
        self._runtime = rt or runtime()
        self._settings = self._runtime.settings_or_log(self.log, "http api")
        # requests refused before the send path (token, body); the send path counts its own
        self._refusals = RefusalLog(self.log, "deptcast http api", "HTTP request", "HTTP requests")
        if self._settings is not None:
            # the body is a JSON frame like a legacy one: the same bound applies (a larger body
            # is refused, 413, before it is read: components.upstream.web)
            self._body_cap = frames.frame_cap(self._settings.max_message_bytes)
            self.log.info("deptcast http api: POST /api/send ready")

    def render_POST(self, request) -> Any:
        if self._settings is None:
            return error_body(request, Refused(UNAVAILABLE, "the HTTP API is misconfigured"))
        try:
            token = bearer_token(header(request, b"authorization"))
            # never log the token: it is a bearer credential
            identity = self._runtime.sessions.grant(self._settings.jwt_secret, token,
                                                    max_ttl=self._settings.max_token_ttl).identity
            frame = frames.parse_send_body(request.content.read(self._body_cap + 1), self._body_cap)
        except Refused as e:
            count_refusal("http", e.uri)
            self._refusals.refused(e.uri, peer_host(request), e.detail)
            return error_body(request, e)

        finished = {"gone": False}
        request.notifyFinish().addErrback(lambda _: finished.update(gone=True))

        def answer(envelope: Dict[str, Any]) -> None:
            if not finished["gone"]:
                request.write(json_body(request, 200, envelope))
                request.finish()

        def refuse(failure: Failure) -> None:
            if isinstance(failure.value, Refused):
                refusal = failure.value  # counted and logged by the send path
            else:
                self._refusals.failed(failure, identity.key)
                refusal = Refused(UNAVAILABLE, "the message could not be sent; retry shortly")
            if not finished["gone"]:
                request.write(error_body(request, refusal))
                request.finish()

        d = self._runtime.messages.get(READY_TIMEOUT)
        d.addErrback(self._not_ready, identity.key)
        d.addCallback(lambda service: service.send(identity, frame.to, frame.message, interface="http"))
        d.addCallbacks(answer, refuse)
        return server.NOT_DONE_YET

    def _not_ready(self, failure: Failure, who: str) -> Failure:
        failure.trap(Refused)  # the node is starting: the send path never saw this request
        refusal = cast(Refused, failure.value)  # trapped
        self._refusals.refused(refusal.uri, who, refusal.detail)
        return failure


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

        finished = {"gone": False}
        request.notifyFinish().addErrback(lambda _: finished.update(gone=True))

        def answer(result: Dict[str, Any]) -> None:
            if not finished["gone"]:
                request.write(json_body(request, 200, result))
                request.finish()

        def refuse(failure: Failure) -> None:
            if isinstance(failure.value, Refused):
                refusal = failure.value
            else:
                self._refusals.failed(failure, identity.key)
                refusal = Refused(UNAVAILABLE, "the revocation could not be stored; retry shortly")
            if not finished["gone"]:
                request.write(error_body(request, refusal))
                request.finish()

        d = self._runtime.messages.get(READY_TIMEOUT)
        d.addCallback(lambda service: self._runtime.sessions.record_revocation(service.store, body["user_key"]))
        d.addCallbacks(answer, refuse)
        return server.NOT_DONE_YET
