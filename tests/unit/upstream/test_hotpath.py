"""components.upstream.hotpath: the worker's message paths give the same bytes as Autobahn's and
Twisted's own, without the invisible log lines, with one serialization and one frame per event,
and with plain-TCP writes sent at once; and the replacements notice an upgrade."""

import socket

import pytest
from autobahn.twisted.websocket import WampWebSocketServerFactory
from autobahn.wamp import message
from autobahn.wamp.serializer import CBORSerializer, JsonSerializer, MsgPackSerializer
from autobahn.websocket.compress import PerMessageDeflate
from autobahn.websocket.protocol import PreparedMessage
from autobahn.exception import PayloadExceededError
from twisted.internet import tcp
from twisted.internet.protocol import Protocol
from twisted.internet.testing import StringTransport

from components import upstream
from components.upstream import hotpath

NAMES = [patch.name for patch in hotpath.PATCHES]


def apply_hotpath():
    return upstream.install(upstream.Wiring(), only=NAMES)


def remove_hotpath():
    upstream.uninstall(NAMES)

SERIALIZERS = [JsonSerializer, MsgPackSerializer, CBORSerializer]


class _Session:
    _authid = "cardio_alice"
    _session_id = 42


def open_connection(serializer_class=JsonSerializer):
    """A WAMP-over-WebSocket server connection in the open state on a string transport, with its
    own serializer object (as every real connection has)."""
    factory = WampWebSocketServerFactory(lambda: None, serializers=[serializer_class()])
    factory.setProtocolOptions(openHandshakeTimeout=0, closeHandshakeTimeout=0, autoPingInterval=0)
    protocol = factory.buildProtocol(None)
    protocol.makeConnection(StringTransport())
    protocol.state = protocol.STATE_OPEN
    protocol._serializer = serializer_class()
    protocol._session = _Session()
    protocol.transport.clear()
    return protocol


def event(n=1):
    return message.Event(7, 1000 + n, args=[{"id": n, "from": "cardio_alice", "to": "cardio",
                                             "message": "Ward round at 10:30 " * 3}])


def wire(serializer_class, install, sends=3, **options):
    if install:
        apply_hotpath()
    else:
        remove_hotpath()
    protocol = open_connection(serializer_class)
    for key, value in options.items():
        setattr(protocol, key, value)
    for n in range(sends):
        protocol.send(event(n))
    return protocol.transport.value()


def test_every_replacement_is_in_place():
    # (every digest is checked against the installed upstream in test_registry.py)
    assert [s.name for s in apply_hotpath() if s.applied] == NAMES


def test_a_replacement_whose_upstream_changed_is_left_alone(monkeypatch):
    monkeypatch.setitem(hotpath.WAMP_SEND.checked, "autobahn.websocket.protocol.PreparedMessage.__init__", "0" * 64)
    states = {s.name: s for s in apply_hotpath()}
    assert not states["hotpath.wamp_send"].applied
    assert states["hotpath.wamp_send"].reason == ("upstream changed: "
                                                   "autobahn.websocket.protocol.PreparedMessage.__init__")
    assert states["hotpath.ws_send_data"].applied
    from autobahn.wamp.websocket import WampWebSocketProtocol
    assert WampWebSocketProtocol.send is upstream.registry.resolve("autobahn.wamp.websocket.WampWebSocketProtocol.send")


@pytest.mark.parametrize("serializer_class", SERIALIZERS)
def test_events_on_the_wire_are_the_bytes_autobahn_sends(serializer_class):
    upstream = wire(serializer_class, install=False)
    assert upstream
    assert wire(serializer_class, install=True) == upstream


def test_an_event_is_serialized_and_framed_once_for_all_receivers(monkeypatch):
    apply_hotpath()
    receivers = [open_connection() for _ in range(5)]
    assert len({id(r._serializer._serializer) for r in receivers}) == 5
    calls = []
    original = type(receivers[0]._serializer._serializer).serialize
    monkeypatch.setattr(type(receivers[0]._serializer._serializer), "serialize",
                        lambda self, obj: calls.append(obj) or original(self, obj))
    frames = []
    original_prepare = PreparedMessage.__init__
    monkeypatch.setattr(PreparedMessage, "__init__",
                        lambda self, *a, **kw: frames.append(a) or original_prepare(self, *a, **kw))
    msg = event()
    for receiver in receivers:
        receiver.send(msg)
    assert len(calls) == 1 and len(frames) == 1
    sent = {r.transport.value() for r in receivers}
    assert len(sent) == 1
    payload, _ = JsonSerializer().serialize(event())
    assert sent == {PreparedMessage(payload, False, False, True).payloadHybi}
    # the serializers' statistics count every message, as Autobahn's own path does
    assert [r._serializer._serialized_messages for r in receivers] == [1] * 5


def test_without_the_hot_path_every_receiver_serializes_the_event_again(monkeypatch):
    # what the test above guards against: Autobahn's cache is per serializer object
    remove_hotpath()
    receivers = [open_connection() for _ in range(5)]
    calls = []
    original = type(receivers[0]._serializer._serializer).serialize
    monkeypatch.setattr(type(receivers[0]._serializer._serializer), "serialize",
                        lambda self, obj: calls.append(obj) or original(self, obj))
    msg = event()
    for receiver in receivers:
        receiver.send(msg)
    assert len(calls) == 5


def sent_and_counted(install, sends=3, **options):
    """What a connection sends and the statistics it keeps (the connection's traffic, its
    serializer's), with or without the hot path."""
    if install:
        apply_hotpath()
    else:
        remove_hotpath()
    protocol = open_connection()
    for key, value in options.items():
        setattr(protocol, key, value)
    for n in range(sends):
        protocol.send(event(n))
    serializer = protocol._serializer
    return (protocol.transport.value(), protocol.trafficStats.__json__(),
            (serializer._serialized_bytes, serializer._serialized_messages, serializer._serialized_rated_messages))


def test_the_statistics_are_the_ones_autobahn_keeps():
    upstream = sent_and_counted(install=False)
    assert upstream[1]["outgoingWebSocketMessages"] == 3 and upstream[2][1] == 3
    assert sent_and_counted(install=True) == upstream


@pytest.mark.parametrize("option", ["logOctets", "logFrames", "trackedTimings", "maskServerFrames"])
def test_a_connection_autobahn_frames_differently_gets_autobahns_framing(monkeypatch, option):
    apply_hotpath()
    protocol = open_connection()
    setattr(protocol, option, True)
    if option == "trackedTimings":
        protocol.setTrackTimings(True)
    framed = []
    original = type(protocol).sendMessage
    monkeypatch.setattr(type(protocol), "sendMessage",
                        lambda self, *a, **kw: framed.append(a) or original(self, *a, **kw))
    msg = event()
    protocol.send(msg)
    other = open_connection()
    other.send(msg)  # a connection with none of those options shares the event's frame
    assert len(framed) == 1
    payload, _ = JsonSerializer().serialize(event())
    assert other.transport.value() == PreparedMessage(payload, False, False, True).payloadHybi
    if option != "maskServerFrames":
        assert protocol.transport.value() == other.transport.value()


def count_highlights(monkeypatch, module=None):
    """The calls to ``hlval`` (Autobahn's colouring of a log argument) in ``module`` (default:
    autobahn.wamp.websocket, which the WAMP send uses)."""
    if module is None:
        from autobahn.wamp import websocket as module
    calls = []
    original = module.hlval
    monkeypatch.setattr(module, "hlval", lambda *a, **kw: calls.append(a) or original(*a, **kw))
    return calls


def send_at_level(protocol, level, msg):
    """Send ``msg`` with the connection's log at ``level``, then put its level back."""
    own = protocol.log._log_level
    protocol.log.set_log_level(level)
    try:
        protocol.send(msg)
    finally:
        protocol.log.set_log_level(own)


def test_no_log_line_is_built_when_trace_is_off(monkeypatch):
    calls = count_highlights(monkeypatch)
    wire(JsonSerializer, install=False, sends=1)
    assert len(calls) >= 4  # Autobahn's own send colours a trace line nobody sees
    calls.clear()
    wire(JsonSerializer, install=True, sends=1)
    assert calls == []


def test_with_trace_on_autobahns_own_send_logs_as_before(monkeypatch):
    calls = count_highlights(monkeypatch)
    apply_hotpath()
    protocol = open_connection()
    send_at_level(protocol, "trace", event(0))
    assert len(calls) >= 4
    remove_hotpath()
    assert protocol.transport.value() == wire(JsonSerializer, install=False, sends=1)


def test_with_debug_on_every_write_is_logged_as_before(monkeypatch):
    from autobahn.websocket import protocol as websocket_protocol
    calls = count_highlights(monkeypatch, websocket_protocol)
    apply_hotpath()
    protocol = open_connection()
    protocol.send(event(0))
    assert calls == []
    send_at_level(protocol, "debug", event(1))
    assert calls  # sendData's debug line about the write
    remove_hotpath()
    assert protocol.transport.value() == wire(JsonSerializer, install=False, sends=2)


def test_a_compressed_connection_is_framed_by_autobahn_per_receiver():
    apply_hotpath()
    compressed = open_connection()
    compressed._perMessageCompress = PerMessageDeflate(True, False, False, 15, 15, 8)
    plain = open_connection()
    msg = event()
    compressed.send(msg)
    plain.send(msg)
    assert compressed.transport.value()[0] & 0x40  # RSV1: a compressed message
    assert not plain.transport.value()[0] & 0x40


def test_a_message_over_the_connections_limit_is_refused_as_autobahn_refuses_it():
    apply_hotpath()
    protocol = open_connection()
    protocol.maxMessagePayloadSize = 20
    with pytest.raises(PayloadExceededError):
        protocol.send(event())
    assert protocol.transport.value() == b""


@pytest.mark.parametrize("install", [False, True])
@pytest.mark.parametrize("compressed", [False, True])
def test_a_message_that_does_not_serialize_is_refused_as_autobahn_refuses_it(install, compressed):
    from autobahn.wamp.exception import SerializationError
    if install:
        apply_hotpath()
    else:
        remove_hotpath()
    protocol = open_connection()
    if compressed:
        protocol._perMessageCompress = PerMessageDeflate(True, False, False, 15, 15, 8)
    with pytest.raises(SerializationError, match="WAMP message serialization error: .*not JSON serializable"):
        protocol.send(message.Event(7, 1, args=[object()]))
    assert protocol.transport.value() == b""


def test_a_message_is_read_as_autobahn_reads_it():
    received = []

    class Session(_Session):
        def onMessage(self, msg):
            received.append(msg)

    payload, _ = JsonSerializer().serialize(message.Publish(1, "deptcast.all", args=["x"]))
    for install in (False, True):
        if install:
            apply_hotpath()
        protocol = open_connection()
        protocol._session = Session()
        protocol.onMessage(payload, False)
    assert len(received) == 2 and received[0].marshal() == received[1].marshal()


def test_a_malformed_message_still_closes_the_connection():
    apply_hotpath()
    protocol = open_connection()
    closed = []
    protocol._bailout = lambda code, reason=None: closed.append((code, reason))
    protocol.onMessage(b'["not a wamp message"', False)
    assert closed and closed[0][0] == protocol.CLOSE_STATUS_CODE_PROTOCOL_ERROR


# -- plain TCP writes ----------------------------------------------------------------------

class _Reactor:
    def __init__(self):
        self.writers = []

    def addWriter(self, writer):
        self.writers.append(writer)

    def removeWriter(self, writer):
        self.writers.remove(writer)


def tcp_connection():
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.setblocking(False)
    reactor = _Reactor()
    connection = tcp.Connection(ours, Protocol(), reactor)
    connection.connected = 1
    return connection, theirs, reactor


def read_all(sock):
    chunks = []
    while True:
        try:
            chunk = sock.recv(1 << 20)
        except BlockingIOError:
            return b"".join(chunks)
        chunks.append(chunk)


def test_a_write_with_nothing_buffered_goes_to_the_socket_at_once():
    apply_hotpath()
    connection, peer, reactor = tcp_connection()
    connection.write(b"frame one")
    assert read_all(peer) == b"frame one"
    assert reactor.writers == []


def test_without_the_hot_path_a_write_waits_for_the_reactor():
    remove_hotpath()
    connection, peer, reactor = tcp_connection()
    connection.write(b"frame one")
    assert read_all(peer) == b""
    assert reactor.writers == [connection]


def test_what_the_socket_does_not_take_is_buffered_in_order():
    apply_hotpath()
    connection, peer, reactor = tcp_connection()
    big = bytes(range(256)) * 40_000  # 10 MB: more than a socket buffer holds
    connection.write(big)
    assert reactor.writers == [connection]
    connection.write(b"after")  # must not overtake what is buffered
    received = [read_all(peer)]
    assert len(received[0]) < len(big)
    while reactor.writers:
        connection.doWrite()
        received.append(read_all(peer))
    received.append(read_all(peer))
    assert b"".join(received) == big + b"after"


def test_a_tls_connection_writes_through_twisted():
    apply_hotpath()
    connection, peer, reactor = tcp_connection()
    sent = []

    class TLSProtocol:
        def write(self, data):
            sent.append(data)

    connection.TLS = True
    connection.protocol = TLSProtocol()
    connection.write(b"secret")
    assert sent == [b"secret"] and read_all(peer) == b""


class _Producer:
    def __init__(self):
        self.calls = []

    def resumeProducing(self):
        self.calls.append("resume")

    def pauseProducing(self):
        self.calls.append("pause")

    def stopProducing(self):
        self.calls.append("stop")


def test_a_connection_with_a_streaming_producer_writes_at_once():
    # a WebSocket upgraded from HTTP: Twisted's HTTP channel stays the transport's producer
    apply_hotpath()
    connection, peer, reactor = tcp_connection()
    connection.registerProducer(_Producer(), True)
    connection.write(b"frame one")
    assert read_all(peer) == b"frame one"
    assert reactor.writers == []


def test_a_pull_producer_is_still_asked_for_more_when_the_buffer_drains():
    apply_hotpath()
    connection, peer, reactor = tcp_connection()
    producer = _Producer()
    connection.registerProducer(producer, False)
    producer.calls.clear()
    connection.write(b"chunk")
    assert reactor.writers == [connection]
    connection.doWrite()
    assert read_all(peer) == b"chunk" and producer.calls == ["resume"]


# -- the router's send ---------------------------------------------------------------------

def router_sends(install, traced=False):
    """Three events and a call result sent by a real Crossbar router to a session with a
    transport and one without: what each transport got, the router's statistics, its log."""
    from crossbar.router.router import RouterFactory
    from crossbar.worker.types import RouterRealm
    if install:
        apply_hotpath()
    else:
        remove_hotpath()
    factory = RouterFactory("node1", "worker1", None)
    factory.start_realm(RouterRealm(None, None, {"name": "deptcast"}))
    router = factory.get("deptcast")
    router._trace_traffic = traced
    logged = []

    class Log:
        def info(self, text, **kw):
            logged.append(("info", text))

        def debug(self, text, **kw):
            logged.append(("debug", text))

    router.log = Log()

    class Transport:
        def __init__(self):
            self.sent = []

        def send(self, msg):
            self.sent.append(msg)

    class Session:
        def __init__(self, transport):
            self._transport = transport
            self._authrole = "member"

    online, gone = Session(Transport()), Session(None)
    messages = [event(1), event(2), message.Result(5, args=[1]), event(3)]
    for msg in messages:
        router.send(online, msg)
    router.send(gone, event(4))
    return [m.marshal() for m in online._transport.sent], router._message_stats["sent"], logged


def test_the_router_sends_and_counts_as_crossbar_does():
    upstream = router_sends(install=False)
    assert upstream[1] == {"event": 4, "result": 1}
    assert upstream[2] == [("debug", "skip sending msg - transport already closed")]
    assert router_sends(install=True) == upstream


def test_a_traced_router_logs_its_traffic_as_before():
    upstream = router_sends(install=False, traced=True)
    assert len([line for line in upstream[2] if line[0] == "info"]) == 5
    assert router_sends(install=True, traced=True) == upstream


def test_a_client_gets_each_event_without_the_publishers_internals_made_once():
    event = message.Event(1, 2, args=[{"message": "hi"}], publisher=77, publisher_authid="uuid",
                          publisher_authrole="deptcast-backend", topic="deptcast.all",
                          forward_for=[{"session": 1, "authid": "n1", "authrole": "deptcast-rlink"}])
    public = hotpath.public_event(event)
    assert public is not event
    assert hotpath.public_event(event) is public  # once per event, for every receiver
    assert (public.publisher, public.publisher_authid, public.publisher_authrole, public.forward_for) == \
        (None, None, None, None)
    assert (public.subscription, public.publication, public.args, public.topic) == (1, 2, [{"message": "hi"}],
                                                                                   "deptcast.all")
    details = JsonSerializer().serialize(public)[0]
    assert b"publisher" not in details and b"forward_for" not in details
    # the original (the links' copy) is untouched
    assert (event.publisher, event.publisher_authid) == (77, "uuid")
    assert b"publisher" in JsonSerializer().serialize(event)[0]
    plain = message.Event(3, 4, args=["x"])
    assert hotpath.public_event(plain) is plain


class _CountingSocket:
    """A socket that counts its ``send`` calls."""

    def __init__(self, sock):
        self._sock = sock
        self.sends = 0

    def send(self, data):
        self.sends += 1
        return self._sock.send(data)

    def __getattr__(self, name):
        return getattr(self._sock, name)


def test_corked_writes_go_out_as_one_send_per_connection_in_order():
    apply_hotpath()
    first, first_peer, first_reactor = tcp_connection()
    second, second_peer, _ = tcp_connection()
    first.socket = counting = _CountingSocket(first.socket)
    with hotpath.corked():
        first.write(b"event 1;")
        second.write(b"other;")
        with hotpath.corked():  # nested: one block
            first.write(b"event 2;")
        first.write(b"result")
        assert read_all(first_peer) == b"" and read_all(second_peer) == b""
    assert read_all(first_peer) == b"event 1;event 2;result"
    assert read_all(second_peer) == b"other;"
    assert counting.sends == 1
    assert first_reactor.writers == []
    first.write(b"after")  # uncorked: at once again
    assert read_all(first_peer) == b"after" and counting.sends == 2


def test_corked_writes_behind_a_full_buffer_keep_their_order():
    apply_hotpath()
    connection, peer, reactor = tcp_connection()
    big = bytes(range(256)) * 40_000  # more than a socket buffer holds
    connection.write(big)
    with hotpath.corked():
        connection.write(b"held")
    received = [read_all(peer)]
    while reactor.writers:
        connection.doWrite()
        received.append(read_all(peer))
    assert b"".join(received) == big + b"held"


def test_an_aborted_connection_gets_nothing_held_for_it():
    apply_hotpath()
    connection, peer, _ = tcp_connection()
    with hotpath.corked():
        connection.write(b"held")
        connection._aborting = True
    assert read_all(peer) == b""


def test_without_the_hot_path_corked_changes_nothing():
    remove_hotpath()
    connection, peer, reactor = tcp_connection()
    with hotpath.corked():
        connection.write(b"frame")
    assert reactor.writers == [connection]
    connection.doWrite()
    assert read_all(peer) == b"frame"


def test_what_one_websocket_read_writes_goes_out_once_per_connection():
    """A receiving node: one read from the link brings two events for the same subscriber."""
    from autobahn.twisted.websocket import WebSocketAdapterProtocol
    apply_hotpath()
    subscriber, peer, _ = tcp_connection()
    subscriber.socket = counting = _CountingSocket(subscriber.socket)

    class Link(WebSocketAdapterProtocol):
        def _dataReceived(self, data):
            for frame in data.split(b"|"):
                subscriber.write(frame)
    Link().dataReceived(b"event 1|event 2")
    assert read_all(peer) == b"event 1event 2"
    assert counting.sends == 1
    remove_hotpath()
    Link().dataReceived(b"event 3|event 4")
    subscriber.doWrite()
    assert read_all(peer) == b"event 3event 4"
