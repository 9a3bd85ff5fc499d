"""What the HTTP resources of the web transport share: JSON answers, error statuses and bearer
tokens. (Request bodies are capped for the whole transport before any resource reads them:
:mod:`components.upstream.web`.)"""

import json
from typing import Any, Callable, Dict, Optional

import txaio
from twisted.internet import defer
from twisted.python.failure import Failure

from components.core.metrics import HTTP_RESPONSES, http_path
from components.core.errors import (INVALID_FRAME, INVALID_TOKEN, NOT_AUTHORIZED, RATE_LIMITED, TOKEN_EXPIRED,
                                    TOO_LARGE, UNAVAILABLE, Refused)

txaio.use_twisted()  # a Twisted module: its txaio loggers are Twisted's

#: HTTP status of each refusal, for the HTTP send API
HTTP_STATUS: Dict[str, int] = {
    INVALID_FRAME: 400,
    INVALID_TOKEN: 401,
    TOKEN_EXPIRED: 401,
    NOT_AUTHORIZED: 403,
    TOO_LARGE: 413,
    RATE_LIMITED: 429,
    UNAVAILABLE: 503,
}


def bearer_token(authorization: Optional[str]) -> str:
    """The token of an ``Authorization: Bearer <token>`` header.

    :raises Refused: ``invalid_token`` if the header is missing or not a bearer token
    :rtype: str
    """
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Refused(INVALID_TOKEN, "send the header 'Authorization: Bearer <token>'")
    return token.strip()


def http_status(uri: str) -> int:
    """The HTTP status of an error URI (500 for one this table does not know).

    :rtype: int
    """
    return HTTP_STATUS.get(uri, 500)


def json_body(request: Any, status: int, body: Any) -> bytes:
    """Set ``status`` and the JSON headers on ``request``; return ``body`` encoded as JSON.

    :rtype: bytes
    """
    request.setResponseCode(status)
    # (a request made in memory may have no path: it counts as "other")
    HTTP_RESPONSES.labels(http_path(getattr(request, "path", None)), str(status)).inc()
    request.setHeader(b"content-type", b"application/json; charset=utf-8")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def error_body(request: Any, refusal: Refused) -> bytes:
    """The answer ``{"error": <uri>, "detail": <text>}`` with the refusal's HTTP status (and
    ``WWW-Authenticate`` or ``Retry-After`` where that status calls for it).

    :rtype: bytes
    """
    status = http_status(refusal.uri)
    if status == 401:
        request.setHeader(b"www-authenticate", b'Bearer realm="deptcast"')
    elif status in (429, 503):
        retry = refusal.retry_after if refusal.retry_after is not None else 1
        request.setHeader(b"retry-after", str(max(1, int(round(retry)))).encode())
    return json_body(request, status, {"error": refusal.uri, "detail": refusal.detail})


def header(request: Any, name: bytes) -> Optional[str]:
    """A request header as text, or ``None``.

    :rtype: str or None
    """
    value = request.getHeader(name)
    if value is None:
        return None
    return value.decode("latin-1") if isinstance(value, bytes) else value


def peer_host(request: Any) -> str:
    """The TCP peer's address (behind a proxy: the proxy's).

    :rtype: str
    """
    peer = request.getClientAddress()
    return getattr(peer, "host", str(peer))


def answer_when_done(request: Any, d: defer.Deferred, failed: Callable[[Failure], None], unavailable: str) -> None:
    """Answer ``request`` when ``d`` fires: 200 with its result as JSON, or the refusal it failed
    with. Any other failure is a fault of the node: it goes to ``failed`` and the client is
    answered ``unavailable`` with the reason ``unavailable`` (never the internal error). Nothing is
    written once the client has gone."""
    finished = {"gone": False}
    request.notifyFinish().addErrback(lambda _: finished.update(gone=True))

    def answer(result: Any) -> None:
        if not finished["gone"]:
            request.write(json_body(request, 200, result))
            request.finish()

    def refuse(failure: Failure) -> None:
        if isinstance(failure.value, Refused):
            refusal = failure.value
        else:
            failed(failure)
            refusal = Refused(UNAVAILABLE, unavailable)
        if not finished["gone"]:
            request.write(error_body(request, refusal))
            request.finish()

    d.addCallbacks(answer, refuse)
