"""What the HTTP resources of the web transport share: JSON answers, error statuses, bearer
tokens, and the cap on request bodies."""

import json
from typing import Any, Dict, Optional

import txaio
from twisted.web import server

from components.core.metrics import HTTP_RESPONSES, http_path
from components.edge.upgraded import trim_upgraded
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


class BoundedRequest(server.Request):
    """A request of the node's web transport whose body may not exceed :attr:`max_body` bytes.

    Twisted reads a request's whole body (into memory, or a temporary file past 100 kB) before
    any resource sees the request, so a resource cannot refuse a large body in time. This
    request answers ``413`` as soon as the declared ``Content-Length`` is over the cap, or, for
    a chunked body, as soon as the bytes received pass it; no resource is called and nothing
    more of the body is kept. (Twisted answers its own malformed requests the same way: a
    status line written straight to the connection.)

    After the answer the connection is half-closed and what the client still sends is read
    and dropped for :attr:`linger` seconds, then the connection is cut: closing at once, with
    the client's data unread, would make the kernel reset the connection, and a client still
    sending might never see the 413 (nginx's "lingering close").
    """

    #: the largest body any of the node's resources reads (set by :func:`bound_request_bodies`)
    max_body: int = 64 * 1024
    #: seconds a refused client may go on sending (dropped) before the connection is cut
    linger: float = 2.0
    log = txaio.make_logger()

    _body_refused = False
    _body_received = 0
    _linger_call = None

    def gotLength(self, length: Optional[int]) -> None:
        if length is not None and length > self.max_body:
            self._refuse_body(f"the body has {length} bytes")
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self._body_refused:
            return
        self._body_received += len(data)
        if self._body_received > self.max_body:
            self._refuse_body(f"the body has more than {self.max_body} bytes")
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self._body_refused:
            return  # answered when the body passed the cap; no resource sees this request
        super().requestReceived(command, path, version)

    def process(self) -> None:
        super().process()
        # a WebSocket took the connection over: drop what it no longer needs (memory per connection)
        trim_upgraded(self)

    def connectionLost(self, reason) -> None:
        if self._linger_call is not None and self._linger_call.active():
            self._linger_call.cancel()
        super().connectionLost(reason)

    def _refuse_body(self, what: str) -> None:
        from twisted.internet import reactor

        self._body_refused = True
        self.content = None  # whatever was kept of the body goes
        # no "100 Continue" after the refusal (the channel sends it once gotLength returns)
        self.requestHeaders.removeHeader(b"expect")
        body = json.dumps({"error": TOO_LARGE, "detail": f"{what}; request bodies may have at most "
                                                         f"{self.max_body} bytes"}).encode("utf-8")
        transport = self.channel.transport
        peer = getattr(transport.getPeer(), "host", "?")
        self.log.info("deptcast http: refused a request body from {peer}: {what}", peer=peer, what=what)
        transport.write(b"HTTP/1.1 413 Payload Too Large\r\n"
                        b"Content-Type: application/json; charset=utf-8\r\n"
                        b"Content-Length: " + str(len(body)).encode() + b"\r\n"
                        b"Connection: close\r\n\r\n" + body)
        try:
            transport.loseWriteConnection()
        except (AttributeError, NotImplementedError):  # a transport that cannot half-close
            self.channel.loseConnection()
            return
        self._linger_call = reactor.callLater(self.linger, transport.abortConnection)


def bound_request_bodies(max_body: int) -> None:
    """Give the web transports of this router worker :class:`BoundedRequest` requests.

    Crossbar builds the transport's ``Site`` after it has made the resources, and offers no
    option to cap bodies, so the resources set the request class of Crossbar's ``Site`` when
    they are made (the worker serves deptcast's transport only). Idempotent; the cap only grows.

    :param max_body: the largest body the calling resource reads
    """
    from crossbar.common.twisted.web import Site

    BoundedRequest.max_body = max(BoundedRequest.max_body, max_body) if Site.requestFactory is BoundedRequest \
        else max_body
    Site.requestFactory = BoundedRequest
