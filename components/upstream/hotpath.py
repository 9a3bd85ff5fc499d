"""The router worker's per-message paths, without the work nobody sees (six patches).

Profiled with py-spy at 40,000 deliveries/s, a third to a half of the router worker's CPU went
to things no one reads or that need doing once, not once per receiver:

* Autobahn's ``WampWebSocketProtocol.send`` and ``onMessage`` build five coloured strings
  (``autobahn.util.hlval`` -> ``click.style``) for a ``trace`` log line on every WAMP message,
  whether or not trace is on; ``WebSocketProtocol.sendData`` does the same for a ``debug`` line
  on every write. txaio turns a disabled level's method into a no-op, but the arguments are
  built before the call.
* An EVENT is one message object for all receivers of a subscription, and Autobahn caches its
  serialization per serializer object, but every connection has its own serializer object: the
  same JSON is produced once per receiver, and then framed once per receiver.
* Twisted's ``FileDescriptor.write`` only buffers: every delivery registers the socket with
  epoll, waits for the next reactor turn, sends, and unregisters: two ``epoll_ctl`` calls and
  a reactor turn per receiver, where one ``send`` would do.

The patches replace five functions, in the router worker only, with versions that do the
same, minus that work (``Router.send`` also applies what clients may receive: see below):

* ``hotpath.wamp_send``, ``hotpath.wamp_on_message``, ``hotpath.ws_send_data``: skip the log
  line when its level is off, and call Autobahn's own function when it is on (so
  ``trace``/``debug`` logs are exactly as before); ``send`` serializes through one shared
  serializer object per (serializer class, settings), so the message's own cache answers every
  receiver after the first; on connections where Autobahn's ``sendMessage`` would frame it the
  same way (no compression, no masking, no fragmentation, no frame or octet logging: decided
  once per connection) it sends a WebSocket frame built once per event (Autobahn's
  ``PreparedMessage``) straight to the transport, keeping the statistics Autobahn keeps;
* ``hotpath.router_send``: Crossbar's ``Router.send`` (once per receiver of every event) skips
  its trace check and the class-name formatting of its message statistics; traced routers take
  Crossbar's own. Being the one place every delivery passes, it also sends nothing to a session
  the router has said GOODBYE to (Crossbar keeps it attached until the peer answers, and its
  broker goes on delivering: a drained client saw an EVENT after GOODBYE) or whose WebSocket
  is closing (Autobahn would raise ``Disconnected`` into the broker's loop over the receivers);
  gives client roles a copy of each EVENT without ``publisher``, ``publisher_authid``,
  ``publisher_authrole`` and ``forward_for`` (made once per event; the realm discloses them
  because the router links need them, and links and the node's own sessions still get them);
  and closes a reader too far behind (:mod:`components.upstream.bounds`);
* ``hotpath.tcp_write``: a plain-TCP write with nothing buffered goes to the socket at once;
  what the socket does not take, and every other write, goes through Twisted's buffer as before.
  Inside :func:`corked` (the answers of one group commit: a batch's or many single sends'
  publishes, the events to every subscriber and the callers' results), a connection's writes
  are held and go out as one ``send`` per connection when the block ends, in the order they
  were written: a batch of 100 notices to 5 subscribers is 5 system calls, not 500.
* ``hotpath.ws_data_received``: what one read of a WebSocket brings (several frames: a link's
  events, a client's calls) is handled inside :func:`corked`, so a receiving node writes each
  subscriber once per read rather than once per event; and Autobahn's debug line for the read is
  only made when debug is on.
"""

import traceback
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import txaio
from autobahn.wamp.exception import ProtocolError, SerializationError, TransportLost
from autobahn.wamp.message import Event
from autobahn.twisted.websocket import WebSocketAdapterProtocol
from autobahn.wamp.websocket import WampWebSocketProtocol
from autobahn.websocket.protocol import PreparedMessage, WebSocketProtocol
from crossbar.router.router import Router
from twisted.internet import tcp

from components.core import names
from components.upstream import bounds
from components.upstream.registry import Patch, Wiring, register, replace

txaio.use_twisted()  # a Twisted module: its txaio loggers are Twisted's

from txaio.tx import _no_op as _TXAIO_NO_OP  # noqa: E402 (the Twisted flavour's, once chosen)


def _enabled(logger: Any, level: str) -> bool:
    """Whether ``logger`` would emit at ``level``: txaio binds a disabled level's method to a
    shared no-op; anything else (another kind of logger) counts as enabled."""
    return getattr(logger, level, None) is not _TXAIO_NO_OP


# -- one serialization and one frame per event --------------------------------------------

_shared_serializers: Dict[Tuple[Any, ...], Any] = {}
_OPEN = WebSocketProtocol.STATE_OPEN
_PLAIN = (bool, int, float, str, bytes)


def shared_object_serializer(object_serializer: Any) -> Any:
    """The object serializer every connection with the same serializer class and settings
    uses as its key into a message's serialization cache (the first one seen), or
    ``object_serializer`` itself where that is not safe to share (FlatBuffers, unhashable
    settings)."""
    if getattr(object_serializer, "NAME", None) == "flatbuffers":
        return object_serializer
    try:
        # its settings; _parent_serializer points back at the connection's Serializer (used
        # by FlatBuffers only)
        settings = tuple(sorted((k, v) for k, v in vars(object_serializer).items() if k != "_parent_serializer"))
    except TypeError:
        return object_serializer
    if not all(v is None or type(v) in _PLAIN for _, v in settings):
        return object_serializer
    return _shared_serializers.setdefault((type(object_serializer), settings), object_serializer)


def serialize_shared(serializer: Any, msg: Any, object_serializer: Any) -> Tuple[bytes, bool]:
    """What ``serializer.serialize(msg)`` answers (Autobahn's ``Serializer.serialize``,
    statistics included), with the message's cache keyed by ``object_serializer``, the shared
    one of the connection's kind."""
    if serializer._autoreset_callback is not None:
        return serializer.serialize(msg)
    data = msg.serialize(object_serializer)
    serializer._serialized_bytes += len(data)
    serializer._serialized_messages += 1
    serializer._serialized_rated_messages += -(-len(data) // serializer.RATED_MESSAGE_SIZE)
    return data, object_serializer.BINARY


def _serialization_failed(log: Any, error: Exception) -> SerializationError:
    """Log a message that would not serialize, as Autobahn's send does, and answer the error
    it raises."""
    log.error(f"WAMP message serialization error: {error}")
    return SerializationError(f"WAMP message serialization error: {error}")


def _route(protocol: Any) -> Tuple[Any, Any, int]:
    """How a connection sends: ``(its shared object serializer, its frame key, the payload size
    above which Autobahn would refuse or fragment a message, 0 for none)``; the frame key is
    ``None`` where Autobahn frames differently (compression, masking, frame or octet logging,
    timings). Kept from the connection's first send in the open state (on its
    :class:`~autobahn.wamp.serializer.Serializer`, one attribute): these options are settled by
    the end of the opening handshake."""
    shared = shared_object_serializer(protocol._serializer._serializer)
    if (protocol._perMessageCompress is not None or not protocol.factory.isServer
            or protocol.maskServerFrames or protocol.logFrames or protocol.logOctets
            or protocol.trackedTimings):
        return shared, None, 0
    limits = [n for n in (protocol.maxMessagePayloadSize, protocol.autoFragmentSize) if n > 0]
    return shared, ("deptcast.frame", shared), min(limits) if limits else 0


# -- the replacements ----------------------------------------------------------------------

def _send(original: Callable[..., Any]) -> Callable[..., Any]:
    def send(self, msg):
        if self._session is None:
            raise TransportLost()
        log = self.log
        if log.trace is not _TXAIO_NO_OP:
            return original(self, msg)
        serializer = self._serializer
        route = serializer.__dict__.get(bounds.ROUTE_ATTRIBUTE)
        if route is None:
            route = _route(self)
            if self.state == _OPEN:
                setattr(serializer, bounds.ROUTE_ATTRIBUTE, route)
        shared, key, limit = route
        # the common case: one frame per event, sent as Autobahn's sendMessage would send it,
        # with the statistics Autobahn keeps (its serializer's and the connection's)
        if (key is not None and self.state == _OPEN and serializer._autoreset_callback is None
                and not self.send_queue and log.debug is _TXAIO_NO_OP):
            cache = msg._serialized
            framed = cache.get(key)
            if framed is None:
                try:
                    payload = msg.serialize(shared)
                except Exception as e:
                    raise _serialization_failed(log, e)
                frame = PreparedMessage(payload, shared.BINARY, False, True).payloadHybi
                framed = cache[key] = (frame, len(payload))
            frame, size = framed
            if not limit or size <= limit:
                serializer._serialized_bytes += size
                serializer._serialized_messages += 1
                serializer._serialized_rated_messages += -(-size // serializer.RATED_MESSAGE_SIZE)
                stats = self.trafficStats
                stats.outgoingWebSocketMessages += 1
                stats.outgoingOctetsAppLevel += size
                stats.outgoingOctetsWebSocketLevel += size
                stats.outgoingWebSocketFrames += 1
                stats.outgoingOctetsWireLevel += len(frame)
                self.transport.write(frame)
                return
        # anything else: serialized once per event all the same, framed by Autobahn
        try:
            payload, is_binary = serialize_shared(serializer, msg, shared)
        except Exception as e:
            raise _serialization_failed(log, e)
        self.sendMessage(payload, is_binary)
    return send


def _on_message(original: Callable[..., Any]) -> Callable[..., Any]:
    def onMessage(self, payload, isBinary):
        if _enabled(self.log, "trace"):
            return original(self, payload, isBinary)
        try:
            for msg in self._serializer.unserialize(payload, isBinary):
                self._session.onMessage(msg)
        except ProtocolError as e:
            # the client's error, not the node's: no traceback; the failing line this leads to
            # is counted and summarised (logs.per_connection_lines)
            self._bailout(WebSocketProtocol.CLOSE_STATUS_CODE_PROTOCOL_ERROR,
                          reason=f"WAMP Protocol Error ({e})")
        except Exception as e:
            self.log.critical("{tb}", tb=traceback.format_exc())
            self._bailout(WebSocketProtocol.CLOSE_STATUS_CODE_INTERNAL_ERROR,
                          reason=f"WAMP Internal Error ({e})")
    return onMessage


def _send_data(original: Callable[..., Any]) -> Callable[..., Any]:
    def sendData(self, data, sync=False, chopsize=None):
        if chopsize or sync or self.send_queue or self.logOctets or _enabled(self.log, "debug"):
            return original(self, data, sync, chopsize)
        self.transport.write(data)
        if self.state == _OPEN:
            self.trafficStats.outgoingOctetsWireLevel += len(data)
        elif self.state in (WebSocketProtocol.STATE_CONNECTING, WebSocketProtocol.STATE_PROXY_CONNECTING):
            self.trafficStats.preopenOutgoingOctetsWireLevel += len(data)
    return sendData


_MESSAGE_NAMES: Dict[type, str] = {}

#: the roles whose sessions get events without the publisher's internals
_CLIENT_ROLES = frozenset(names.CLIENT_ROLES)
#: what a client never sees of the node: the publishing session, its authid and role, and the
#: links it came through
_INTERNAL_DETAILS = ("_publisher", "_publisher_authid", "_publisher_authrole", "_forward_for")
_EVENT_SLOTS = tuple(dict.fromkeys(n for c in Event.__mro__ for n in getattr(c, "__slots__", ())))
#: the last event made public and its public copy: the broker sends one event to every
#: receiver of a subscription in one loop, so one entry serves them all
_public: List[Any] = [None, None]
_CLOSING = (WebSocketProtocol.STATE_CLOSING, WebSocketProtocol.STATE_CLOSED)


def public_event(msg: Any) -> Any:
    """``msg`` (an EVENT) without the details a client must not see (:data:`_INTERNAL_DETAILS`):
    a copy with its own serialization cache, made once per event; ``msg`` itself if it carries
    none of them."""
    if _public[0] is msg:
        return _public[1]
    if all(getattr(msg, name, None) is None for name in _INTERNAL_DETAILS):
        public = msg
    else:
        public = Event.__new__(Event)
        for name in _EVENT_SLOTS:
            try:
                setattr(public, name, getattr(msg, name))
            except AttributeError:
                continue
        public._serialized = {}
        for name in _INTERNAL_DETAILS:
            setattr(public, name, None)
    _public[0], _public[1] = msg, public
    return public


def _router_send(original: Callable[..., Any]) -> Callable[..., Any]:
    def send(self, session, msg):
        # nothing after GOODBYE: Crossbar keeps a session it said goodbye to attached until the
        # peer's reply, and its broker would go on delivering to it
        if getattr(session, "_goodbye_sent", False):
            return
        transport = session._transport
        if isinstance(transport, WebSocketProtocol) and transport.state in _CLOSING:
            return  # closing: Autobahn would raise Disconnected into the broker's delivery loop
        if type(msg) is Event and getattr(session, "_authrole", None) in _CLIENT_ROLES:
            msg = public_event(msg)
        # traced, or the session gone: Crossbar's own (its trace lines, its debug line)
        if self._trace_traffic or self._is_traced or not transport:
            return original(self, session, msg)
        transport.send(msg)
        # the router's message statistics, as Crossbar counts them (per lower-case class name)
        kind = type(msg)
        name = _MESSAGE_NAMES.get(kind)
        if name is None:
            name = _MESSAGE_NAMES[kind] = kind.__name__.lower()
        sent = self._message_stats["sent"]
        sent[name] = sent.get(name, 0) + 1
        # a reader too far behind is closed (components.upstream.bounds)
        limit = bounds.send_buffer()
        if limit:
            buffered = bounds.behind(getattr(transport, "transport", None))
            if buffered > limit:
                bounds.fell_behind(transport, buffered)
    return send


#: the writes held by :func:`corked`, per connection, in order (``None``: not corked)
_held: Optional[Dict[Any, List[bytes]]] = None
_log = txaio.make_logger()


@contextmanager
def corked() -> Iterator[None]:
    """Hold the plain-TCP writes made inside the block (with ``hotpath.tcp_write`` applied)
    and send each connection's as one write when it ends, in the order they were made.

    For code that writes many frames to the same connections in one go and without waiting
    (the publishes of one group commit): one system call per connection instead of one per
    frame. Nested blocks are one block. A connection aborted meanwhile gets nothing.
    """
    global _held
    if _held is not None:
        yield
        return
    _held = {}
    try:
        yield
    finally:
        held, _held = _held, None
        for connection, chunks in held.items():
            if getattr(connection, "_aborting", False):
                continue
            try:
                connection.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))
            except Exception:
                _log.failure("deptcast hotpath: a held write failed: {log_failure.value}")


def _write(original: Callable[..., Any]) -> Callable[..., Any]:
    def write(self, data):
        held = _held
        if held is not None and not self.TLS and data:
            # (any bytes-like data: nothing may overtake what is held for the connection)
            chunks = held.get(self)
            if chunks is None:
                held[self] = [data if type(data) is bytes else bytes(data)]
            else:
                chunks.append(data if type(data) is bytes else bytes(data))
            return
        # a pull producer is asked for more when Twisted's buffer drains: its writes take
        # Twisted's path (a streaming one is only paused when the buffer fills, which still
        # happens)
        if (self.TLS or type(data) is not bytes or not data or not self.connected
                or self._writeDisconnected or self._tempDataBuffer or self.dataBuffer
                or (self.producer is not None and not self.streamingProducer)):
            return original(self, data)
        try:
            sent = self.socket.send(data)
        except OSError:
            # would block, or the connection is gone: Twisted's own write path handles both
            return original(self, data)
        if sent < len(data):
            original(self, data[sent:])
    return write


def _data_received(original: Callable[..., Any]) -> Callable[..., Any]:
    def dataReceived(self, data):
        with corked():
            if _enabled(self.log, "debug"):
                return original(self, data)
            self._dataReceived(data)
    return dataReceived


def _replacing(name: str, owner: Any, attribute: str,
               make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> Callable[[Wiring], None]:
    """A patch's ``apply``: put ``make(upstream function)`` at ``owner.attribute``."""
    def apply(wiring: Wiring) -> None:
        upstream = getattr(owner, attribute)
        replace(name, owner, attribute, make(upstream))
    return apply


#: Autobahn's WebSocket framing that the shared frame mirrors (the send's fallback is
#: Autobahn's sendMessage, so what it does matters too)
_FRAMING = {
    "autobahn.websocket.protocol.WebSocketProtocol.sendMessage":
        "048d6bcf0d71230997c4b4225086c891ed1247eed9307e58546b1bfb5b174443",
    "autobahn.websocket.protocol.WebSocketProtocol.sendFrame":
        "89cc8b024c413aa09943880cb5bcf0667bc2cce07b6cb3c9c864bba04fe9e659",
    "autobahn.websocket.protocol.WebSocketProtocol.sendData":
        "5dcca425b048b07eb27d56a625a790d7a8e48fbe958753074cb1e55e174b2423",
    "autobahn.websocket.protocol.PreparedMessage.__init__":
        "76eab585334bdb7191702fc9b2a77dbb616430c095e26bbd63770f06668fd0d7",
    "autobahn.wamp.serializer.Serializer.serialize":
        "cd15fee2e94c110103d80b48c08a2c3227d249bbf60dd1fc39a6e0a865e5fd28",
    "autobahn.wamp.message.Message.serialize":
        "aa23f385e6f405c944f6e6644d70600a27c7ee436a621fec3ae8f346f6a6ac0e",
}

WAMP_SEND = register(Patch(
    name="hotpath.wamp_send",
    replaces=("autobahn.wamp.websocket.WampWebSocketProtocol.send",),
    checked={"autobahn.wamp.websocket.WampWebSocketProtocol.send":
             "811ed7bd88f1a2c9ea86d6cba69f3a8ea5b16b8cca1a75fd12d1c0e1bba48ee5", **_FRAMING},
    why="Autobahn serializes and frames an EVENT once per receiver (its serialization cache is per "
        "serializer object, one per connection) and colours a trace line per message whatever the level; "
        "with 500 receivers an event is now serialized and framed once",
    remove_when="Autobahn shares serializations between connections of the same serializer (or Crossbar's "
                "broker sends one prepared frame per event), and builds log arguments only when the level is on",
    apply=_replacing("autobahn.wamp.websocket.WampWebSocketProtocol.send", WampWebSocketProtocol, "send", _send),
))

ROUTER_SEND = register(Patch(
    name="hotpath.router_send",
    replaces=("crossbar.router.router.Router.send",),
    checked={"crossbar.router.router.Router.send":
             "4724a7e8f8ed777658617155817ebf1f63303587b0ba2619a83e063f45b6b311",
             "crossbar.router.router.Router._check_trace":
             "c5340c7f09ddfe4850645c7ce70fc1c151a1aa621ffaa57e2fcb541d8ff62f81",
             # the EVENT whose public copy a client gets (its slots are copied)
             "autobahn.wamp.message.Event.__init__":
             "b6cfad73c996cab3a74c0858a714bc8490bcfaceb3c946781f64dcda5a7b3cd8",
             # the GOODBYE after which nothing more is sent (_goodbye_sent)
             "crossbar.router.session.RouterSession.leave":
             "4c67cc2a4de5c05f0d35e7f27b912d2eeb1833ce67ba707eb1be5d39979e222e",
             # what a send on a closing WebSocket raises (Disconnected)
             "autobahn.websocket.protocol.WebSocketProtocol.sendMessage":
             "048d6bcf0d71230997c4b4225086c891ed1247eed9307e58546b1bfb5b174443"},
    why="Crossbar's Router.send, called once per receiver of every event, checks tracing and formats the "
        "message class's name for its statistics every time; it also goes on delivering to a session it has "
        "said GOODBYE to (until the peer's reply), raises Autobahn's Disconnected into the broker's delivery "
        "loop for a closing WebSocket, gives clients the publisher's session, authid and role and the links' "
        "forward_for (the links need them disclosed between nodes: kept for every role but the client roles), "
        "and buffers without bound for a reader that does not read (closed past DEPTCAST_SEND_BUFFER)",
    remove_when="Crossbar's Router.send skips its trace check when no trace is on and caches the statistics key, "
                "delivers nothing after GOODBYE or to a closing transport, can disclose the publisher to some "
                "roles only, and bounds a session's outgoing buffer",
    apply=_replacing("crossbar.router.router.Router.send", Router, "send", _router_send),
))

WAMP_ON_MESSAGE = register(Patch(
    name="hotpath.wamp_on_message",
    replaces=("autobahn.wamp.websocket.WampWebSocketProtocol.onMessage",),
    checked={"autobahn.wamp.websocket.WampWebSocketProtocol.onMessage":
             "d1ba23b42b823852d10386068a7b513a1cc82930f64d558ec64848823db23d86"},
    why="Autobahn colours a trace line for every WAMP message received, whatever the log level",
    remove_when="Autobahn builds the trace line's arguments only when trace is on",
    apply=_replacing("autobahn.wamp.websocket.WampWebSocketProtocol.onMessage", WampWebSocketProtocol, "onMessage",
                     _on_message),
))

WS_SEND_DATA = register(Patch(
    name="hotpath.ws_send_data",
    replaces=("autobahn.websocket.protocol.WebSocketProtocol.sendData",),
    checked={"autobahn.websocket.protocol.WebSocketProtocol.sendData":
             "5dcca425b048b07eb27d56a625a790d7a8e48fbe958753074cb1e55e174b2423"},
    why="Autobahn colours a debug line for every write, whatever the log level (every legacy delivery is one)",
    remove_when="Autobahn builds the debug line's arguments only when debug is on",
    apply=_replacing("autobahn.websocket.protocol.WebSocketProtocol.sendData", WebSocketProtocol, "sendData",
                     _send_data),
))

TCP_WRITE = register(Patch(
    name="hotpath.tcp_write",
    # plain TCP connections (tcp.Connection) get the replacement; TLS ones take the original
    replaces=("twisted.internet._newtls.ConnectionMixin.write",),
    checked={"twisted.internet._newtls.ConnectionMixin.write":
             "ea311df0946d3f997a11838e59692e33a6734dcd42a0f29b3331e7ad3ca8117a",
             "twisted.internet.abstract.FileDescriptor.write":
             "3e46c97fc173bc7e227065420969c27688f24903c27dcc165b63166a605d688c",
             "twisted.internet.abstract.FileDescriptor.doWrite":
             "a986d7b1b1054e431495d50528824683fa7ebb1ffcf3e57333bdd6f37f603141"},
    why="Twisted only buffers a write and sends it at the next reactor turn: two epoll_ctl calls and a reactor "
        "turn per delivery where one send() would do",
    remove_when="Twisted writes to the socket at once when nothing is buffered",
    apply=_replacing("twisted.internet._newtls.ConnectionMixin.write", tcp.Connection, "write", _write),
))

WS_DATA_RECEIVED = register(Patch(
    name="hotpath.ws_data_received",
    replaces=("autobahn.twisted.websocket.WebSocketAdapterProtocol.dataReceived",),
    checked={"autobahn.twisted.websocket.WebSocketAdapterProtocol.dataReceived":
             "7997f762de21843361fe9d6bc8df40f6517cafe310d76eb61b292aa8cecf9661"},
    why="a read that brings several WebSocket frames (a link's events to a receiving node, a client's calls) "
        "writes to each receiver once per frame: one system call per event and receiver where one per read and "
        "receiver would do (with hotpath.tcp_write's corked writes); and the read's debug line is built whatever "
        "the level",
    remove_when="Twisted or Autobahn coalesce the writes made while one read is handled, and Autobahn builds the "
                "read's debug line only when debug is on",
    apply=_replacing("autobahn.twisted.websocket.WebSocketAdapterProtocol.dataReceived", WebSocketAdapterProtocol,
                     "dataReceived", _data_received),
))

#: the six patches of this area
PATCHES = (WAMP_SEND, ROUTER_SEND, WAMP_ON_MESSAGE, WS_SEND_DATA, TCP_WRITE, WS_DATA_RECEIVED)

__all__ = ["PATCHES", "corked", "serialize_shared", "shared_object_serializer"]
