"""The web transport's HTTP side (three patches): request bodies capped before they are read,
WebSocket connections trimmed once upgraded, and small frames unmasked in Python.

``web.request_bodies``: Twisted reads a request's whole body (into memory, or a temporary file
past 100 kB) before any resource sees the request, so a resource cannot refuse a large body in
time, and Crossbar offers no option to cap bodies. The patch gives Crossbar's ``Site`` (built
after the resources, when the transport starts) :class:`BoundedRequest`, which answers ``413``
as soon as a body passes the cap. It applies to every path of the web transport, whatever the
node config mounts.

``web.trim_upgraded``: Autobahn's ``WebSocketResource`` takes a connection over from Twisted
Web inside the upgrade request's ``render``: it moves the TCP transport to the WebSocket
protocol, replays the request's bytes into it (the handshake, and for WAMP the protocol's
``onOpen``, which makes Crossbar's ``RouterSession``, all run before ``render`` returns) and
answers ``NOT_DONE_YET``. Three things then stay alive for as long as the connection, unused
(measured with ``tracemalloc`` in the router worker, 2,000 idle WAMP sessions):

- the Twisted ``HTTPChannel`` stays registered as the TCP transport's producer, and through
  its ``requests`` list keeps the upgrade ``Request`` (headers twice, as ``Headers`` and raw
  lines, the body buffer, addresses, cookies): about 3 KiB, more with a browser's headers.
  Once the request is handed over the channel is inert as a producer (it pauses and resumes
  only a request producer, which it does not have, or its transport while not handling a
  request, which it always is: the upgrade never finishes), so it is unregistered and
  forgotten;
- the WebSocket protocol's handshake state: the raw request and response, the parsed request
  line, the offered subprotocols and extensions, and its copies of the factory's handshake
  options (:data:`HANDSHAKE_ONLY`, read only in ``processHandshake``, ``succeedHandshake`` and
  the WAMP protocols' ``onConnect``: :func:`_handshake_readers` checks that at install); the
  parsed headers stay, in ``http_headers`` and the transport details Crossbar reports.
  Autobahn's protocol has 106 attributes once open, an instance dict of 3.3 KiB; without
  these 22 it fits in the next smaller dict size, 1.6 KiB, once the dict is rebuilt;
- the ``RouterSession``'s own txaio logger: Autobahn's ``BaseSession.__init__`` makes one per
  instance (a logger, a Twisted logger and a bound function per log level, about 2 KiB),
  although ``RouterSession`` has one of the same namespace as a class attribute; the
  instance's is dropped, so the session logs through the class's.

The patch wraps ``WebSocketResource.render`` to call :func:`trim_upgraded` once it returns
(``/ws`` and the legacy endpoint alike); :func:`trim_upgraded` touches nothing whose shape
differs from what it expects.

``web.small_masks``: every frame a WebSocket client sends is masked with a key of its own, so
Autobahn makes a masker for every frame it receives (and a link's client leg for every frame it
sends). Its native masker (``autobahn.nvx``, through cffi) costs more to make than to use: a
``uint8_t[4]`` and a finalizer per frame, and a copy in and out of a cffi buffer, for frames of a
few hundred bytes (3-5 % of a cluster node's router worker in a storm of connecting clients).
The patch gives Autobahn's WebSocket module a ``create_xor_masker`` that masks a frame of up to
:data:`SMALL_FRAME` bytes with :class:`SmallMasker` (the XOR of two integers, the same
``pointer``/``reset``/``process`` and the same bytes), and leaves larger or unknown-length frames
to Autobahn's masker (faster from about 1.5 KiB on: 30-1,024 bytes took 1.7-6.1 µs a frame this way
against 6.5-8.2 µs with the native masker; 1,500 bytes 8.3 against 7.2).
"""

import json
from typing import Any, Callable, Dict, List, Optional

import txaio
from autobahn.twisted.resource import WebSocketResource
from autobahn.websocket import protocol as ws_protocol
from autobahn.websocket.protocol import WebSocketServerProtocol
from crossbar.common.twisted.web import Site
from twisted.web import server

from components.core.errors import TOO_LARGE
from components.upstream.registry import Patch, Wiring, register, replace, users_of

txaio.use_twisted()  # a Twisted module: its txaio loggers are Twisted's


# -- small frames' masks --------------------------------------------------------------------

#: frames up to this many bytes are (un)masked by :class:`SmallMasker`
SMALL_FRAME = 1024


class SmallMasker:
    """WebSocket (un)masking of one frame with the 4-byte ``mask``, in pieces as they come:
    what Autobahn's maskers do (``pointer()`` the bytes done, ``reset()``, ``process(data)``
    the next bytes XORed with the mask from where the last piece ended)."""

    __slots__ = ("_mask", "_ptr")

    def __init__(self, mask: bytes) -> None:
        self._mask = bytes(mask)
        self._ptr = 0

    def pointer(self) -> int:
        return self._ptr

    def reset(self) -> None:
        self._ptr = 0

    def process(self, data: bytes) -> bytes:
        n = len(data)
        if not n:
            return b""
        shift = self._ptr & 3
        mask = self._mask[shift:] + self._mask[:shift] if shift else self._mask
        key = (mask * ((n >> 2) + 1))[:n]
        self._ptr += n
        return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


def small_masks(upstream: Callable[..., Any]) -> Callable[..., Any]:
    """Autobahn's ``create_xor_masker`` that gives a frame of known length up to
    :data:`SMALL_FRAME` bytes a :class:`SmallMasker`."""
    def create_xor_masker(mask, length=None):
        if length is not None and length <= SMALL_FRAME and len(mask) == 4:
            return SmallMasker(mask)
        return upstream(mask, length)
    return create_xor_masker


def _small_masks(wiring: Wiring) -> None:
    replace("autobahn.websocket.protocol.create_xor_masker", ws_protocol, "create_xor_masker",
            small_masks(ws_protocol.create_xor_masker))


def _masks_shape(wiring: Wiring) -> Optional[str]:
    readers = set(users_of("autobahn.websocket.protocol", "create_xor_masker"))
    expected = {"autobahn.websocket.protocol.WebSocketProtocol.processData",
                "autobahn.websocket.protocol.WebSocketProtocol.sendFrame",
                "autobahn.websocket.protocol.WebSocketProtocol.beginMessageFrame",
                "autobahn.websocket.protocol.PreparedMessage.__init__"}
    if readers != expected:
        return f"the readers of create_xor_masker are not the ones checked: {sorted(readers ^ expected)}"
    return None


# -- request bodies ------------------------------------------------------------------------

class BoundedRequest(server.Request):
    """A request of the node's web transport whose body may not exceed :attr:`max_body` bytes.

    This request answers ``413`` as soon as the declared ``Content-Length`` is over the cap,
    or, for a chunked body, as soon as the bytes received pass it; no resource is called and
    nothing more of the body is kept. (Twisted answers its own malformed requests the same
    way: a status line written straight to the connection.)

    After the answer the connection is half-closed and what the client still sends is read
    and dropped for :attr:`linger` seconds, then the connection is cut: closing at once, with
    the client's data unread, would make the kernel reset the connection, and a client still
    sending might never see the 413 (nginx's "lingering close").
    """

    #: the largest body any of the node's resources reads (set when the patch is applied)
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

    def connectionLost(self, reason) -> None:
        if self._linger_call is not None and self._linger_call.active():
            self._linger_call.cancel()
        super().connectionLost(reason)

    def _refuse_body(self, what: str) -> None:
        from twisted.internet import reactor  # (at the top, the import would install the default reactor)

        self._body_refused = True
        self.content = None  # whatever was kept of the body goes
        # no "100 Continue" after the refusal (the channel sends it once gotLength returns)
        self.requestHeaders.removeHeader(b"expect")
        body = json.dumps({"error": TOO_LARGE, "detail": f"{what}; request bodies may have at most "
                                                         f"{self.max_body} bytes"}).encode("utf-8")
        transport: Any = self.channel.transport  # half-close and abort: a TCP transport's, where it is one
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


def _bound_request_bodies(wiring: Wiring) -> None:
    BoundedRequest.max_body = wiring.max_body
    replace("crossbar.common.twisted.web.Site.requestFactory", Site, "requestFactory", BoundedRequest)


REQUEST_BODIES = register(Patch(
    name="web.request_bodies",
    replaces=("crossbar.common.twisted.web.Site.requestFactory",),
    checked={
        # the request class Crossbar's Site is built with (HSTS wraps it when the Site is made)
        "crossbar.common.twisted.web.Site.__init__":
            "bd41166f2d98689e123a96fdba37a7630038151788c8acbbe2c056a3019988bd",
        # how Twisted's channel hands a request its length and body, and answers 100-continue
        "twisted.web.http.HTTPChannel.allHeadersReceived":
            "979a9a8410f41ad93bf8490700f9893dcf43bf8fb91af01b6bd5770910c28ebe",
        "twisted.web.http.Request.gotLength":
            "1c389b99da50b0ae01068e39c543b5cfca3d227c96313bd6588d0850e61ef49f",
        "twisted.web.http.Request.handleContentChunk":
            "6e942756afb787b481118f00463abd0b27aee4af61474df2b4a7ec627902c470",
        "twisted.web.http.Request.requestReceived":
            "99ca6c5e24305de4a0cf1270a1cf624046cded1ceb23fb1c62bd743074f61d3f",
    },
    why="Twisted reads a request's whole body before any resource sees it, and Crossbar has no option to cap "
        "bodies: a 3 GB upload to any path of the node's port would be read (spooled to a file) before a "
        "resource could refuse it. The cap answers 413 as soon as the body passes the largest a resource reads",
    remove_when="Crossbar's web transport takes a maximum request body size (or Twisted Web one per Site)",
    apply=_bound_request_bodies,
))


# -- connections upgraded to WebSocket -----------------------------------------------------

#: attributes of Autobahn's WebSocket server protocol read only during the opening handshake
#: (server side), by Autobahn or Crossbar
HANDSHAKE_ONLY = (
    "http_request_data", "http_response_data", "http_status_line", "http_request_uri", "http_request_path",
    "http_request_params", "http_request_host", "websocket_protocols", "websocket_extensions",
    "websocket_origin", "_wskey", "STRICT_PROTOCOL_NEGOTIATION",
    # the factory's handshake options, copied into every protocol when it connects
    "versions", "webStatus", "perMessageCompressionAccept", "serveFlashSocketPolicy", "flashSocketPolicy",
    "allowedOrigins", "allowedOriginsPatterns", "allowNullOrigin", "maxConnections", "trustXForwardedFor",
)

#: the server protocols' methods that read :data:`HANDSHAKE_ONLY`, all of them during the handshake
HANDSHAKE_READERS = (
    "autobahn.wamp.websocket.WampWebSocketServerProtocol.onConnect",
    "autobahn.websocket.protocol.WebSocketServerProtocol.processHandshake",
    "autobahn.websocket.protocol.WebSocketServerProtocol.succeedHandshake",
    "crossbar.router.protocol.WampWebSocketServerProtocol.onConnect",
)
_SERVER_PROTOCOLS = {
    "autobahn.websocket.protocol": ("WebSocketProtocol", "WebSocketServerProtocol"),
    "autobahn.twisted.websocket": ("WebSocketAdapterProtocol", "WebSocketServerProtocol",
                                   "WampWebSocketServerProtocol"),
    "autobahn.wamp.websocket": ("WampWebSocketProtocol", "WampWebSocketServerProtocol"),
    "crossbar.router.protocol": ("WampWebSocketServerProtocol",),
}


def websocket_of(request: Any) -> Any:
    """The WebSocket protocol that took ``request``'s connection over, else ``None``.

    :rtype: WebSocketServerProtocol or None
    """
    channel, transport = getattr(request, "channel", None), getattr(request, "transport", None)
    if channel is None or transport is None or getattr(channel, "transport", True) is not None:
        return None  # not handed over: Twisted Web still serves it
    protocol = getattr(transport, "protocol", None)
    protocol = getattr(protocol, "wrappedProtocol", protocol)  # Crossbar's connection counter, TLS
    return protocol if isinstance(protocol, WebSocketServerProtocol) else None


def trim_upgraded(request: Any) -> Dict[str, bool]:
    """If a WebSocket took over ``request``'s connection, drop what the connection no longer
    needs (see the module's text). Answers what was done, for the tests.

    :rtype: dict
    """
    done = {"channel": False, "handshake": False, "session_log": False}
    protocol = websocket_of(request)
    if protocol is None:
        return done
    channel, transport = request.channel, request.transport
    if getattr(transport, "producer", None) is channel and not getattr(channel, "_requestProducer", None):
        transport.unregisterProducer()
        channel.requests = []
        done["channel"] = True
    if protocol.state == protocol.STATE_OPEN:
        state = vars(protocol)
        dropped = [name for name in HANDSHAKE_ONLY if name in state]
        for name in dropped:
            del state[name]
        done["handshake"] = bool(dropped)
        # a dict never shrinks when keys go: a copy is sized for what is left
        protocol.__dict__ = dict(state)
    session = getattr(protocol, "_session", None)
    own = vars(session).get("log") if session is not None and hasattr(session, "__dict__") else None
    shared = getattr(type(session), "log", None)
    if own is not None and shared is not None and type(own) is type(shared) \
            and _namespace(own) is not None and _namespace(own) == _namespace(shared):
        del session.log
        done["session_log"] = True
    return done


def _namespace(logger: Any) -> Any:
    return getattr(getattr(logger, "_logger", None), "namespace", None)


def _handshake_readers() -> List[str]:
    """The methods of the server protocols that read an attribute of :data:`HANDSHAKE_ONLY`.

    :rtype: list
    """
    found: List[str] = []
    for module_name, classes in _SERVER_PROTOCOLS.items():
        found += users_of(module_name, HANDSHAKE_ONLY, within=classes)
    return sorted(found)


def _handshake_shape(wiring: Wiring) -> Optional[str]:
    readers = _handshake_readers()
    if readers != sorted(HANDSHAKE_READERS):
        return "the handshake's attributes are read by " + ", ".join(sorted(set(readers) - set(HANDSHAKE_READERS))
                                                                    or ["fewer methods than checked"])
    return None


def _trimming_render(upstream: Callable[..., Any]) -> Callable[..., Any]:
    def render(self, request):
        answer = upstream(self, request)
        # a WebSocket took the connection over: drop what it no longer needs (memory per connection)
        trim_upgraded(request)
        return answer
    return render


def _trim_upgraded(wiring: Wiring) -> None:
    replace("autobahn.twisted.resource.WebSocketResource.render", WebSocketResource, "render",
            _trimming_render(WebSocketResource.render))


TRIM_UPGRADED = register(Patch(
    name="web.trim_upgraded",
    replaces=("autobahn.twisted.resource.WebSocketResource.render",),
    checked={
        "autobahn.twisted.resource.WebSocketResource.render":
            "6ecfc501d8f550fbbc6568fb85064af67a772fbab3c4aa864067be19baf53e68",
        # the HTTP channel is inert as a producer once its request is handed over
        "twisted.web.http.HTTPChannel.pauseProducing":
            "8fe306cf284ba8e71b43a4e4219986e3521ddc9b8766d2101e9984b3090bf6ed",
        "twisted.web.http.HTTPChannel.resumeProducing":
            "561ac237d3468e84939ec6c3d856dd7a556d3df459dd02969d43543105fb54fb",
        # the factory's options copied in, and every reader of the handshake's attributes
        "autobahn.websocket.protocol.WebSocketProtocol._connectionMade":
            "7ac58d8bb6c3c752dc6753e09d2358573a2a47da90275e962830af0600fdf077",
        "autobahn.wamp.websocket.WampWebSocketServerProtocol.onConnect":
            "15b53ee4f740f91550b4a20a1a588c6f6e78ed99430c79854e2dc78a7d007b8e",
        "autobahn.websocket.protocol.WebSocketServerProtocol.processHandshake":
            "0055f4d3499376738a0a710fc56b499befa39d90e2060ee1dabefda36bedb483",
        "autobahn.websocket.protocol.WebSocketServerProtocol.succeedHandshake":
            "fb43d387929cf20640844b409a55bdfc0a643b20bb987af9a96c795f9678a9e8",
        "crossbar.router.protocol.WampWebSocketServerProtocol.onConnect":
            "31da73439ce9d1f8eaccb71f5ad338597ed7e155c436cc92fd84d1d5ecb1c342",
        # the per-instance session logger, beside RouterSession's class logger
        "autobahn.wamp.protocol.BaseSession.__init__":
            "68e799dcfb1aa543a30cc9807946197b8ef89def5e879a81458b267b35e91075",
    },
    why="every idle WebSocket connection kept its upgrade request and HTTP channel (about 3 KiB), the "
        "handshake's raw bytes and options (the protocol's dict 3.3 KiB instead of 1.6) and a logger of its own "
        "(2 KiB): memory per idle WAMP connection 23.7 KiB before, 15.8 KiB after",
    remove_when="Autobahn's WebSocketResource releases the HTTP channel and the handshake state once the "
                "connection is open, and Autobahn's sessions share their class's logger",
    apply=_trim_upgraded,
    shape=_handshake_shape,
))

#: the two patches of this area
SMALL_MASKS = register(Patch(
    name="web.small_masks",
    replaces=("autobahn.websocket.protocol.create_xor_masker",),
    checked={
        "autobahn.nvx._xormasker.create_xor_masker":
            "240d02cb93d1dbef22ed025b270b1f66f735590d48fd00fe0e4005787ada30a7",
        "autobahn.nvx._xormasker.XorMaskerNvx":
            "08678bbe1b1d451dad96dd21643eb26ffd69d8385cb7a2accdf1eee3d264a0e1",
        # where frames are (un)masked: pointer(), process() in pieces, a length always given
        "autobahn.websocket.protocol.WebSocketProtocol.processData":
            "25b9c1387a46ab258a5ead2b4837253bb3582c51883ee3d70497e4eaa89e00f2",
        "autobahn.websocket.protocol.WebSocketProtocol.onFrameData":
            "b39b40e3d17022738f71777d79f18c6eabb8cafdc061bff5354fa974a6423a38",
        "autobahn.websocket.protocol.WebSocketProtocol.sendFrame":
            "89cc8b024c413aa09943880cb5bcf0667bc2cce07b6cb3c9c864bba04fe9e659",
        "autobahn.websocket.protocol.WebSocketProtocol.beginMessageFrame":
            "925e3dcdf816e9ad911d2855ca513f68d4877db9d857a04f9c1a32d76137e966",
        "autobahn.websocket.protocol.WebSocketProtocol.sendMessageFrameData":
            "f406d33af72e5c98cf109958957f1ff2acd4da2fe4fbd3e805bafeb5b80487f7",
        "autobahn.websocket.protocol.PreparedMessage.__init__":
            "76eab585334bdb7191702fc9b2a77dbb616430c095e26bbd63770f06668fd0d7",
    },
    why="Autobahn makes a native (cffi) masker for every frame a client sends and every frame a link's client "
        "leg sends, costing more to make than to use on frames of a few hundred bytes: 3-5 % of a cluster "
        "node's router worker in a storm of connecting clients",
    remove_when="Autobahn's masker is cheap to make for small frames (or it unmasks without a per-frame object)",
    apply=_small_masks,
    shape=_masks_shape,
))

PATCHES = (REQUEST_BODIES, TRIM_UPGRADED, SMALL_MASKS)

__all__ = ["HANDSHAKE_ONLY", "SMALL_MASKS", "BoundedRequest", "PATCHES", "SmallMasker", "small_masks",
           "trim_upgraded", "websocket_of"]
