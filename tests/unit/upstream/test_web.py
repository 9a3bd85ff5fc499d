"""Unit tests of :mod:`components.upstream.web`: request bodies capped before they are read, and
what a WebSocket connection keeps once the handshake is done, on the real Twisted Web, Autobahn
and Crossbar classes of the router worker (an in-memory transport instead of a socket)."""

import gc
import json
import os
import sys
import weakref

import pytest
import txaio

txaio.use_twisted()

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from crossbar.router.protocol import WampWebSocketServerFactory
from crossbar.router.session import RouterSession
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.web import resource, server

from components import upstream
from components.ops.nodeconfig import websocket_options
from components.upstream import web
from components.upstream.web import HANDSHAKE_ONLY, BoundedRequest, trim_upgraded

UPGRADE = (b"GET /ws HTTP/1.1\r\nHost: localhost:8080\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
           b"Sec-WebSocket-Protocol: wamp.2.json\r\nUser-Agent: test\r\nCookie: a=" + b"x" * 500 + b"\r\n\r\n")


class Echo(WebSocketServerProtocol):
    def onMessage(self, payload, is_binary):
        self.sendMessage(payload, is_binary)


class TcpTransport(StringTransport):
    """An in-memory transport that, like Twisted's TCP transports (``FileDescriptor``), lets a
    producer be unregistered when none is (Autobahn does it when it drops a connection)."""

    def unregisterProducer(self):
        self.producer = None


def client_frame(text: str) -> bytes:
    """A masked text frame, as a client sends it (payload under 126 bytes)."""
    payload, mask = text.encode(), os.urandom(4)
    return bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def ws_factory(protocol=WebSocketServerProtocol):
    factory = WebSocketServerFactory(protocols=["wamp.2.json"])
    factory.protocol = protocol
    return factory


def wamp_factory():
    """Crossbar's factory of /ws, configured as the node's, making Crossbar's RouterSession."""
    return WampWebSocketServerFactory(lambda: RouterSession(None), "/tmp",
                                      {"type": "websocket", "serializers": ["json"], "options": websocket_options()},
                                      None)


def serve(ws_factory, request_factory=server.Request, upgrade=UPGRADE, trim=True):
    """A site with the WebSocket at /ws, one connection to it, and the upgrade request sent
    (with the patch ``web.trim_upgraded`` in place, unless ``trim`` is false)."""
    if trim:
        [status] = upstream.install(upstream.Wiring(), only=[web.TRIM_UPGRADED.name])
        assert status.applied, status.reason
    root = resource.Resource()
    root.putChild(b"ws", WebSocketResource(ws_factory))
    requests = []

    class Recorded(request_factory):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            requests.append(weakref.ref(self))

    site = server.Site(root)
    site.requestFactory = Recorded
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    transport = TcpTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
    transport.protocol = channel  # as a TCP transport holds its protocol
    channel.makeConnection(transport)
    channel_ref = weakref.ref(channel._channel)  # Twisted's HTTPChannel (inside a version switcher)
    channel.dataReceived(upgrade)
    del channel
    gc.collect()
    return transport, channel_ref, requests[0]


def test_an_upgraded_connection_keeps_no_http_request_and_still_works():
    transport, channel, request = serve(ws_factory())
    assert transport.value().startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    ws = transport.protocol
    assert isinstance(ws, WebSocketServerProtocol) and ws.state == ws.STATE_OPEN
    assert transport.producer is None
    assert channel() is None and request() is None  # the HTTP channel and request are gone
    assert not set(HANDSHAKE_ONLY) & set(vars(ws))
    assert sys.getsizeof(vars(ws)) < 2048  # the next smaller dict size (3.3 KiB before)
    assert ws.http_headers["cookie"] == "a=" + "x" * 500  # the parsed headers stay


def test_the_connection_still_echoes_after_the_trim():
    transport, _, _ = serve(ws_factory(Echo))
    transport.clear()
    transport.protocol.dataReceived(client_frame("hello"))
    assert transport.value() == b"\x81\x05hello"
    transport.clear()
    close = os.urandom(4)  # a client's close frame, code 1000
    transport.protocol.dataReceived(b"\x88\x82" + close + bytes(b ^ close[i] for i, b in enumerate(b"\x03\xe8")))
    assert transport.value() == b"\x88\x02\x03\xe8"  # answered with the same code
    assert transport.protocol.state == transport.protocol.STATE_CLOSING or transport.disconnecting


def test_without_the_trim_the_request_stays_for_the_connections_life():
    """What the trim is for: Twisted Web keeps the upgrade request alive through its channel,
    the transport's producer."""
    transport, channel, request = serve(ws_factory(), trim=False)
    assert transport.protocol.state == transport.protocol.STATE_OPEN
    assert channel() is not None and request() is not None and transport.producer is channel()
    assert transport.protocol.http_request_data is not None and sys.getsizeof(vars(transport.protocol)) > 3000


def test_a_wamp_router_session_logs_through_its_class_logger():
    transport, channel, request = serve(wamp_factory())
    session = transport.protocol._session
    assert isinstance(session, RouterSession)
    assert "log" not in vars(session) and session.log is RouterSession.log
    assert channel() is None and request() is None


def test_trim_reports_each_part_on_crossbars_own_objects():
    """Autobahn still gives every session a logger of its own and Crossbar's RouterSession one
    of the same namespace on the class: if either changes, look at upgraded.py again."""
    results = []

    class Recording(server.Request):
        def process(self):
            server.Request.process(self)
            results.append(trim_upgraded(self))

    transport, _, _ = serve(wamp_factory(), Recording, trim=False)
    assert results == [{"channel": True, "handshake": True, "session_log": True}]
    assert transport.value().startswith(b"HTTP/1.1 101 Switching Protocols\r\n")


def test_the_node_declines_permessage_deflate():
    """/ws with the node's options answers a browser's offer of compression without it: zlib's
    state would be about 290 KiB per connection at the default window (README, Performance)."""
    offer = UPGRADE.replace(b"\r\n\r\n",
                            b"\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n")
    transport, _, _ = serve(wamp_factory(), upgrade=offer)
    answer = transport.value().split(b"\r\n\r\n")[0].lower()
    assert answer.startswith(b"http/1.1 101 switching protocols")
    assert b"sec-websocket-extensions" not in answer
    assert transport.protocol.websocket_extensions_in_use == []


def test_trim_leaves_plain_http_requests_alone():
    results = []

    class Page(resource.Resource):
        isLeaf = True

        def render_GET(self, request):
            return json.dumps({"ok": True}).encode()

    class Recording(server.Request):
        def process(self):
            server.Request.process(self)
            results.append(trim_upgraded(self))

    site = server.Site(Page())
    site.requestFactory = Recording
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    transport = TcpTransport()
    transport.protocol = channel
    channel.makeConnection(transport)
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b'{"ok": true}' in transport.value()
    assert results == [{"channel": False, "handshake": False, "session_log": False}]
    assert transport.producer is channel._channel  # keep-alive HTTP goes on as before


def test_the_trim_is_not_applied_when_a_new_reader_of_the_handshake_appears(monkeypatch):
    """An upgrade whose protocol reads a dropped attribute after the handshake: the shape check
    leaves the trim out (the digests of the readers it knows may not have changed)."""
    from autobahn.websocket.protocol import WebSocketServerProtocol as Upstream

    def onOpen(self):
        return self.websocket_protocols

    monkeypatch.setattr(Upstream, "onOpen", onOpen, raising=False)
    [status] = upstream.install(upstream.Wiring(), only=[web.TRIM_UPGRADED.name])
    assert not status.applied
    assert status.reason == ("the handshake's attributes are read by "
                             "autobahn.websocket.protocol.WebSocketServerProtocol.onOpen")


# -- request bodies ------------------------------------------------------------------------

class Echoing(resource.Resource):
    isLeaf = True

    def render_POST(self, request):
        return b"read " + str(len(request.content.read())).encode()


def post(head: bytes, body: bytes = b"", max_body: int = 100):
    """A POST on a site of :class:`BoundedRequest` (cap ``max_body``): what the node answered,
    and the transport."""
    [status] = upstream.install(upstream.Wiring(max_body=max_body), only=[web.REQUEST_BODIES.name])
    assert status.applied
    site = server.Site(Echoing())
    site.requestFactory = BoundedRequest
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    transport = TcpTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
    transport.protocol = channel
    channel.makeConnection(transport)
    channel.dataReceived(head + body)
    return transport.value(), transport


def test_the_patch_gives_crossbars_site_the_bounded_request():
    from crossbar.common.twisted.web import Site
    [status] = upstream.install(upstream.Wiring(max_body=1234), only=[web.REQUEST_BODIES.name])
    assert status.applied and Site.requestFactory is BoundedRequest and BoundedRequest.max_body == 1234
    upstream.uninstall([web.REQUEST_BODIES.name])
    assert Site.requestFactory is server.Request


def test_a_body_within_the_cap_is_read_by_the_resource():
    answer, _ = post(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n", b"x" * 100)
    assert answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(b"read 100")


def test_a_declared_length_over_the_cap_is_refused_before_the_body_comes():
    answer, transport = post(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3000000000\r\n"
                             b"Expect: 100-continue\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 413 Payload Too Large\r\n")
    assert b"100 Continue" not in answer and b"read" not in answer
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1]) == {
        "error": "deptcast.error.too_large",
        "detail": "the body has 3000000000 bytes; request bodies may have at most 100 bytes"}


def test_a_chunked_body_is_refused_once_it_passes_the_cap():
    head = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    answer, _ = post(head, b"40\r\n" + b"x" * 64 + b"\r\n" + b"40\r\n" + b"x" * 64 + b"\r\n0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 413 Payload Too Large\r\n") and b"read" not in answer
    assert b"more than 100 bytes" in answer


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__])


# -- web.small_masks ---------------------------------------------------------------------------

def test_a_small_frame_is_masked_as_autobahn_masks_it_in_any_pieces():
    import os

    from autobahn.nvx._xormasker import create_xor_masker
    from components.upstream.web import SmallMasker

    for length in (1, 3, 4, 5, 17, 130, 1000):
        mask, data = os.urandom(4), os.urandom(length)
        theirs, ours = create_xor_masker(mask, length), SmallMasker(mask)
        assert ours.process(data) == theirs.process(data)
        assert ours.pointer() == theirs.pointer() == length
        ours.reset()
        cuts = sorted({0, min(1, length), min(2, length), length // 2, length})
        pieces = [data[a:b] for a, b in zip(cuts, cuts[1:])]
        assert b"".join(ours.process(p) for p in pieces) == create_xor_masker(mask, length).process(data)
        assert ours.pointer() == length


def test_with_the_patch_autobahn_unmasks_small_frames_with_the_small_masker():
    from autobahn.websocket import protocol as ws_protocol
    from components.upstream.web import SMALL_FRAME, SMALL_MASKS, SmallMasker

    [state] = upstream.install(upstream.Wiring(), only=[SMALL_MASKS.name])
    try:
        assert state.applied, state.reason
        assert isinstance(ws_protocol.create_xor_masker(b"abcd", 300), SmallMasker)
        assert not isinstance(ws_protocol.create_xor_masker(b"abcd", SMALL_FRAME + 1), SmallMasker)
        assert not isinstance(ws_protocol.create_xor_masker(b"abcd"), SmallMasker)
    finally:
        upstream.uninstall()
    assert not isinstance(ws_protocol.create_xor_masker(b"abcd", 300), SmallMasker)
