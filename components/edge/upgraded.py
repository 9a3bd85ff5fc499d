"""What a WebSocket connection of the router worker keeps once its opening handshake is done,
trimmed: memory per idle connection (``/ws`` and the legacy ``/webSocket/<key>``).

Autobahn's ``WebSocketResource`` takes a connection over from Twisted Web inside the upgrade
request's ``render``: it moves the TCP transport to the WebSocket protocol, replays the
request's bytes into it (the handshake, and for WAMP the protocol's ``onOpen``, which makes
Crossbar's ``RouterSession``, all run before ``render`` returns) and answers
``NOT_DONE_YET``. Three things then stay alive for as long as the connection, unused
(measured with ``tracemalloc`` in the router worker, 2,000 idle WAMP sessions; see README,
Performance):

- the Twisted ``HTTPChannel`` stays registered as the TCP transport's producer, and through
  its ``requests`` list keeps the upgrade ``Request`` (headers twice, as ``Headers`` and raw
  lines, the body buffer, addresses, cookies): about 3 KiB, more with a browser's headers.
  Once the request is handed over the channel is inert as a producer (it pauses and resumes
  only a request producer, which it does not have, or its transport while not handling a
  request, which it always is: the upgrade never finishes), so it is unregistered and
  forgotten;
- the WebSocket protocol's handshake state: the raw request and response, the parsed request
  line, the offered subprotocols and extensions, and its copies of the factory's handshake
  options (:data:`HANDSHAKE_ONLY`: Autobahn 26.3 and Crossbar 26.10 read them only in
  ``processHandshake``, ``succeedHandshake`` and Crossbar's ``onConnect``; the parsed headers
  stay, in ``http_headers`` and the transport details Crossbar reports). Autobahn's protocol
  has 106 attributes once open, an instance dict of 3.3 KiB; without these 22 it fits in the
  next smaller dict size, 1.6 KiB, once the dict is rebuilt;
- the ``RouterSession``'s own txaio logger: Autobahn's ``BaseSession.__init__`` makes one per
  instance (a logger, a Twisted logger and a bound function per log level, about 2 KiB),
  although ``RouterSession`` has one of the same namespace as a class attribute; the
  instance's is dropped, so the session logs through the class's.

:func:`trim_upgraded` does this for one request and touches nothing whose shape differs from
what it expects (Twisted 25, Autobahn 26.3, Crossbar 26.10, ``constraints.txt``):
``tests/unit/test_upgraded.py`` runs it on real Twisted, Autobahn and Crossbar objects and
fails if an upgrade changes one of these shapes.
"""

from typing import Any, Dict

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


def websocket_of(request: Any) -> Any:
    """The WebSocket protocol that took ``request``'s connection over, else ``None``.

    :rtype: WebSocketServerProtocol or None
    """
    from autobahn.websocket.protocol import WebSocketServerProtocol

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
