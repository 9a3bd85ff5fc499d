"""Test clients that are not WAMP: an old-style page over plain WebSocket, HTTP requests,
and a backend session on the node's Unix socket for the router's meta API.

The legacy client uses autobahn's plain WebSocket layer (no WAMP): it speaks exactly what the
old page spoke -- ``ping`` text frames, ``{"to", "message"}`` JSON text frames -- and records
every text frame it receives.
"""

import json
import re
from io import BytesIO
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import quote

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Protocol, connectionDone
from twisted.web.client import Agent, FileBodyProducer, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers



class HandshakeRefused(Exception):
    """The endpoint refused the WebSocket handshake with HTTP ``status`` and ``reason``."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason


class LegacySocket(WebSocketClientProtocol):
    """What an old page does: open, heartbeat, send JSON frames, show every text frame."""

    answer_pings = True

    def __init__(self) -> None:
        super().__init__()
        self.opened: defer.Deferred = defer.Deferred()
        self.closed: defer.Deferred = defer.Deferred()
        self.texts: List[str] = []
        self.binary_frames = 0
        self.pings = 0
        self.close_info: Optional[Tuple[bool, Optional[int], Optional[str]]] = None

    def onOpen(self) -> None:
        self.opened.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if isBinary:
            self.binary_frames += 1
        else:
            self.texts.append(payload.decode("utf-8"))

    def onPing(self, payload: bytes) -> None:
        self.pings += 1
        if self.answer_pings:
            super().onPing(payload)

    def onClose(self, wasClean: bool, code: Optional[int], reason: Optional[str]) -> None:
        self.close_info = (wasClean, code, reason)
        if not self.opened.called:
            self.opened.errback(_refusal(reason or ""))
        if not self.closed.called:
            self.closed.callback(self.close_info)

    # -- what the page sends

    def heartbeat(self) -> None:
        self.sendMessage(b"ping", isBinary=False)

    def send_json(self, to: Any, message: Any) -> None:
        self.sendMessage(json.dumps({"to": to, "message": message}).encode("utf-8"), isBinary=False)

    def send_text(self, text: str) -> None:
        self.sendMessage(text.encode("utf-8"), isBinary=False)

    # -- what the page shows

    @property
    def open_now(self) -> bool:
        return self.state == self.STATE_OPEN

    def messages(self) -> List[str]:
        """Every received text that is not an error frame, in order."""
        return [t for t in self.texts if _as_error(t) is None]

    def errors(self) -> List[Dict[str, str]]:
        """Every received error frame ``{"error", "detail"}``, in order."""
        return [e for e in (_as_error(t) for t in self.texts) if e is not None]

    def close(self) -> defer.Deferred:
        if self.state == self.STATE_OPEN:
            self.sendClose(1000)
        elif not self.closed.called and self.transport is not None:
            self.dropConnection(abort=True)
        return self.closed


class _SilentSocket(LegacySocket):
    """A peer that is gone without closing: it never answers a WebSocket ping."""

    answer_pings = False


def _as_error(text: str) -> Optional[Dict[str, str]]:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if isinstance(value, dict) and set(value) == {"error", "detail"}:
        return value
    return None


_UPGRADE_FAILED = re.compile(r"upgrade failed \[(\d+)\]: ?(.*)", re.S)


def _refusal(reason: str) -> Exception:
    match = _UPGRADE_FAILED.search(reason)
    if match:
        return HandshakeRefused(int(match.group(1)), match.group(2))
    return ConnectionError(reason or "connection closed before the WebSocket opened")


def legacy_url(port: int, key: str, token: Optional[str] = None) -> str:
    url = f"ws://127.0.0.1:{port}/webSocket/{quote(key, safe='')}"
    return url + (f"?token={token}" if token is not None else "")


def connect_legacy(port: int, key: str, token: Optional[str] = None, answer_pings: bool = True,
                   timeout: float = 15.0, path: Optional[str] = None,
                   protocols: Optional[List[str]] = None) -> defer.Deferred:
    """Open ``/webSocket/<key>`` like the old page (plus ``?token=``); fire with the open
    :class:`LegacySocket`, or fail with :class:`HandshakeRefused`.

    :param path: a raw request path instead of ``/webSocket/<key>?token=...``
    :param protocols: WebSocket subprotocols to offer (the socket's
        ``websocket_protocol_in_use`` is the server's answer)
    """
    url = legacy_url(port, key, token)
    if path is not None:
        url = f"ws://127.0.0.1:{port}{path}"
    factory = WebSocketClientFactory(url, protocols=protocols)
    factory.protocol = LegacySocket if answer_pings else _SilentSocket
    factory.setProtocolOptions(autoPingInterval=0)
    d = TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(factory)
    d.addCallback(lambda proto: proto.opened)
    return d.addTimeout(timeout, reactor)


# -- HTTP


@defer.inlineCallbacks
def http_request(method: str, url: str, body: Optional[bytes] = None,
                 headers: Optional[Dict[str, str]] = None):
    """One HTTP request; fire with ``(status, headers, body bytes)``."""
    h = Headers({k: [v] for k, v in (headers or {}).items()})
    producer = FileBodyProducer(BytesIO(body)) if body is not None else None
    response = yield Agent(reactor).request(method.encode(), url.encode(), h, producer)
    data = yield _read_body(response)
    return response.code, response.headers, data


class _BodyCollector(Protocol):
    def __init__(self, done: defer.Deferred) -> None:
        self._done = done
        self._chunks: List[bytes] = []

    def dataReceived(self, data: bytes) -> None:
        self._chunks.append(data)

    def connectionLost(self, reason=connectionDone) -> None:
        if reason.check(ResponseDone, PotentialDataLoss):
            self._done.callback(b"".join(self._chunks))
        else:
            self._done.errback(reason)


def _read_body(response) -> defer.Deferred:
    # readBody warns about the transport twisted's own Agent gives it; collect the body plainly
    done: defer.Deferred = defer.Deferred()
    response.deliverBody(_BodyCollector(done))
    return done


def post_send(port: int, body: Any, token: Optional[str] = None, raw: Optional[bytes] = None,
              authorization: Optional[str] = None) -> defer.Deferred:
    """``POST /api/send``; fire with ``(status, headers, parsed JSON or raw bytes)``."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if authorization is not None:
        headers["Authorization"] = authorization
    data = raw if raw is not None else json.dumps(body).encode("utf-8")
    d = http_request("POST", f"http://127.0.0.1:{port}/api/send", data, headers)

    def parse(result):
        status, hdrs, content = result
        try:
            return status, hdrs, json.loads(content)
        except ValueError:
            return status, hdrs, content
    return d.addCallback(parse)
