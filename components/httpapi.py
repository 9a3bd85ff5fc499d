"""``POST /api/send``: the send API for backends that cannot speak WAMP.

Mounted in the node's web transport as a Twisted resource. The caller authenticates with a
deptcast token (``Authorization: Bearer <token>``, any role: a ``publisher`` token for a
backend that notifies any department, a ``member`` token for one acting as a user); the body
is ``{"to": ..., "message": ...}``. The request goes through ``deptcast.internal.send_as``
over the worker's bridge session, so the rules, error URIs, rate limit, store and publish
are exactly those of ``deptcast.send``.

Answers: 200 with the envelope; else ``{"error": <uri>, "detail": <text>}`` with 400
``invalid_frame``, 401 ``invalid_token``/``token_expired``, 403 ``not_authorized``,
413 ``too_large``, 429 ``rate_limited``, 503 ``unavailable``.

Crossbar's HTTP bridge ``publisher`` service is not used: it publishes straight to a topic,
past validation, authorization and the store.
"""

import json
from typing import Any, Dict, Optional

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import resource, server

from components import legacyframes
from components.bridge import Bridge, get_bridge
from components.config import ConfigError, Settings, load_settings
from components.errors import UNAVAILABLE, Refused
from components.tokens import verify_token


def _json(request, status: int, body: Any) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json; charset=utf-8")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def _error(request, refusal: Refused) -> bytes:
    status = legacyframes.http_status(refusal.uri)
    if status == 401:
        request.setHeader(b"www-authenticate", b'Bearer realm="deptcast"')
    elif status == 429:
        request.setHeader(b"retry-after", b"1")
    return _json(request, status, {"error": refusal.uri, "detail": refusal.detail})


class HttpSendResource(resource.Resource):
    """``/api/send``: one POST, one message."""

    isLeaf = True
    log = Logger()

    def __init__(self, extra: Optional[Dict[str, Any]] = None, settings: Optional[Settings] = None,
                 bridge: Optional[Bridge] = None) -> None:
        super().__init__()
        self._settings = settings
        if settings is None:
            try:
                self._settings = load_settings()
            except ConfigError as e:
                self.log.error("deptcast http api: off (every request gets 503): {error}", error=str(e))
        self._bridge = bridge or get_bridge()
        if self._settings is not None:
            # the body is a JSON frame like a legacy one: the same bound applies
            self._body_cap = legacyframes.frame_cap(self._settings.max_message_bytes)
            self.log.info("deptcast http api: POST /api/send ready")

    def render_POST(self, request) -> Any:
        if self._settings is None:
            return _error(request, Refused(UNAVAILABLE, "the HTTP API is misconfigured"))
        try:
            token = legacyframes.bearer_token(_header(request, b"authorization"))
            # never log the token: it is a bearer credential
            identity = verify_token(self._settings.jwt_secret, token)
            body = request.content.read(self._body_cap + 1)
            if len(body) > self._body_cap:
                raise legacyframes.oversize_refusal(len(body), self._body_cap)
            frame = legacyframes.parse_send_body(body)
        except Refused as e:
            self.log.info("deptcast http api: refused a request from {peer}: {uri}",
                          peer=_peer(request), uri=e.uri)
            return _error(request, e)

        finished = {"gone": False}
        request.notifyFinish().addErrback(lambda _: finished.update(gone=True))

        def answer(envelope: Dict[str, Any]) -> None:
            if not finished["gone"]:
                request.write(_json(request, 200, envelope))
                request.finish()

        def refuse(failure: Failure) -> None:
            if failure.check(Refused):
                refusal = failure.value
                self.log.info("deptcast http api: refused a send by {user}: {uri}",
                              user=identity.user, uri=refusal.uri)
            else:
                self.log.failure("deptcast http api: send failed", failure)
                refusal = Refused(UNAVAILABLE, "the message could not be sent; retry shortly")
            if not finished["gone"]:
                request.write(_error(request, refusal))
                request.finish()

        self._bridge.send_as(identity, frame.to, frame.message).addCallbacks(answer, refuse)
        return server.NOT_DONE_YET


def _header(request, name: bytes) -> Optional[str]:
    value = request.getHeader(name)
    if value is None:
        return None
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _peer(request) -> str:
    peer = request.getClientAddress()
    return getattr(peer, "host", str(peer))
