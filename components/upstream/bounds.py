"""What one ``/ws`` connection may cost the router worker (two patches, and the rules the
hot path applies per delivery).

Before authentication a WAMP connection is anyone's. Crossbar reads, parses and answers a
HELLO as large as the transport's message limit (sized for the largest ``deptcast.send``:
about 448 KiB), and lets a connection that never authenticates stay until a ping fails. Thirty
HELLOs of 420 KB (``authextra`` holding 140,000 empty lists) cost the router 6.4 s of CPU.

* ``bounds.before_auth``: at most ``max_authenticating`` WebSocket connections of a router
  worker may be between the upgrade and their WELCOME at once; a connection asking to upgrade
  while that many are authenticating is answered at once with HTTP 503 and a jittered
  ``Retry-After`` (:func:`admit`, :func:`retry_after`), before the upgrade, so that a node that
  many clients come to at once (the failover of another node) works through them as a queue
  instead of starting them all and finishing none in time. When a WebSocket connection opens,
  its incoming message and frame
  limits are set to :data:`PREAUTH_BYTES` (Autobahn checks them as each frame's length is read,
  before a byte of the payload is kept, let alone parsed), and a timer closes it (1008) if it has
  not authenticated within the node's ``auth_timeout``; once Crossbar attaches its session to the
  router (authentication done), the transport's own limits come back, the timer goes, and the
  hot path forgets the sending route it kept from the CHALLENGE (whose size limit was the small
  one).

After authentication, the hot path (:mod:`components.upstream.hotpath`, ``Router.send``)
asks :func:`behind` after every delivery how far the connection's Twisted write buffer is
behind; past the node's ``send_buffer`` the connection is closed by :func:`fell_behind`: a
1008 close frame queued after what it has not read (a reader that catches up reads it and
resumes by position), and Autobahn's close-handshake timeout aborts the TCP connection of one
that does not.

Every close is counted in ``deptcast_connections_closed{reason}`` and in the node's summarised
log (:attr:`Wiring.connection_refusals`), never a line per connection.

* ``bounds.per_session``: a client session with ``calls_in_flight`` calls not yet answered gets
  ``deptcast.error.rate_limited`` for the next one (counted in ``deptcast_calls_refused``), and
  one holding ``max_subscriptions`` subscriptions is refused another (``wamp.error.not_authorized``:
  a member can use four topics; a publisher may listen to any department).
"""

import random
import time
from typing import Any, Callable, Dict, Optional

import txaio
from twisted.web.server import NOT_DONE_YET
from autobahn.wamp import message
from crossbar.router.broker import Broker
from crossbar.router.dealer import Dealer
from autobahn.twisted.resource import WebSocketResource
from crossbar.router.protocol import WampWebSocketServerFactory, WampWebSocketServerProtocol
from crossbar.router.router import Router

from components.core import names
from components.core.errors import RATE_LIMITED
from components.core.metrics import AUTHENTICATING, AUTHENTICATING_REFUSED, CALLS_REFUSED, CONNECTIONS_CLOSED
from components.upstream import localcalls
from components.upstream.registry import Patch, Wiring, register, replace

txaio.use_twisted()  # a Twisted module: its txaio loggers are Twisted's

#: the largest WebSocket message (and frame) a connection may send before it has
#: authenticated: a HELLO with a token and a small authextra, or an AUTHENTICATE
PREAUTH_BYTES = 64 * 1024
#: the hot path's per-connection sending route, cached on the connection's serializer
ROUTE_ATTRIBUTE = "_deptcast_route"
#: WebSocket close code for a policy violation (RFC 6455 7.4.1)
POLICY_VIOLATION = 1008
#: the router's refusal of a subscription (the contract's WAMP-level refusals)
NOT_AUTHORIZED_WAMP = "wamp.error.not_authorized"

#: HTTP status of the refusal of an upgrade while ``max_authenticating`` connections are
#: authenticating, and its reason phrase
BUSY_STATUS = 503
BUSY_REASON = "Service Unavailable"
#: seconds over which the node counts its refusals and authentications for the ``Retry-After`` hint
PRESSURE_WINDOW = 5.0
#: the longest ``Retry-After`` hint, in seconds
RETRY_AFTER_CAP = 60

#: what the patches were given (set when they are applied)
_wiring = Wiring()


def wire(wiring: Wiring) -> None:
    """Keep what the node gave the patches (the bounds, where refusals are summarised)."""
    global _wiring
    _wiring = wiring


def _refused(reason: str, who: Optional[str], detail: str, counted: bool = True) -> None:
    if counted:
        CONNECTIONS_CLOSED.labels(reason).inc()
    refusals = _wiring.connection_refusals
    if refusals is not None:
        refusals.refused(reason, who, detail)


#: WebSocket close codes Autobahn fails a connection with, by the reason they are counted as
_FAILURES = {1002: "protocol_error", 1009: "too_large", 1007: "invalid_payload", 1011: "internal_error"}


def connection_failed(format: str, fields: Dict[str, Any]) -> None:
    """Autobahn's warning line for a WAMP connection it fails (``failing WebSocket connection``:
    a protocol error, a message over the limit) or drops (``dropping connection to peer``: a
    ping or close handshake that timed out), counted and summarised instead of logged."""
    if "failing" in format:
        code = fields.get("code")
        reason = _FAILURES.get(code, f"failed_{code}") if isinstance(code, int) else "failed"
        _refused(reason, None, str(fields.get("reason", "")), counted=code in (1002, 1009, 1007))
    else:
        _refused("dropped", None, str(fields.get("reason", "")), counted=False)


# -- before authentication -----------------------------------------------------------------

def admit(authenticating: int, bound: int) -> bool:
    """Whether a connection asking to upgrade may, with ``authenticating`` connections of the
    worker between their upgrade and their WELCOME, under a bound of ``bound`` (0: no bound).

    :rtype: bool
    """
    return bound <= 0 or authenticating < bound


def retry_after(refused: int, authenticated: int, seconds: float, bound: int, draw: float,
                cap: int = RETRY_AFTER_CAP) -> int:
    """The ``Retry-After`` (whole seconds, 1 to ``cap``) for a refused upgrade: spread at random
    (``draw``, uniform in [0, 1)) over the time the node would take to admit as many clients as
    it refused in the last ``seconds`` at the pace it authenticated them (at least ``bound`` in
    10 s, what the bound is sized for). Clients that retry with it come back spread over the
    queue's length, not together; if they still come too often, more are refused and the hints
    grow.

    :param refused: upgrades refused in the last ``seconds``
    :param authenticated: connections authenticated in the last ``seconds``
    :rtype: int
    """
    pace = max(authenticated / seconds if seconds > 0 else 0.0, bound / 10.0, 1.0)
    longest = min(float(cap), max(1.0, refused / pace))
    return max(1, min(cap, 1 + int(draw * longest)))


class Pressure:
    """Refusals and authentications of a worker's connections over the last
    :data:`PRESSURE_WINDOW` seconds (two buckets: the current one and the one before), and the
    number of connections authenticating now."""

    def __init__(self, window: float = PRESSURE_WINDOW, clock: Callable[[], float] = time.monotonic,
                 draw: Callable[[], float] = random.random) -> None:
        self.window = window
        self.authenticating = 0
        self._clock = clock
        self._draw = draw
        self._bucket = -1
        self._counts = [0, 0, 0, 0]  # refused, authenticated: this bucket; refused, authenticated: the one before

    def _roll(self) -> float:
        now = self._clock()
        bucket = int(now // self.window)
        if bucket != self._bucket:
            c = self._counts
            self._counts = [0, 0, c[0], c[1]] if bucket == self._bucket + 1 else [0, 0, 0, 0]
            self._bucket = bucket
        return now

    def refused(self, bound: int) -> int:
        """Count a refusal; answers its ``Retry-After``."""
        now = self._roll()
        self._counts[0] += 1
        c = self._counts
        seconds = self.window + (now - self._bucket * self.window)
        return retry_after(c[0] + c[2], c[1] + c[3], seconds, bound, self._draw())

    def authenticated(self) -> None:
        self._roll()
        self._counts[1] += 1


#: the router worker's connections between upgrade and WELCOME, and its recent refusals
pressure = Pressure()


def _render(original: Any) -> Any:
    def render(self, request):
        bound = _wiring.max_authenticating
        if isinstance(self._factory, WampWebSocketServerFactory) and not admit(pressure.authenticating, bound):
            return _busy(request, bound)
        return original(self, request)
    return render


def _busy(request: Any, bound: int) -> Any:
    """Answer an upgrade request 503 with its ``Retry-After`` and close the connection: no
    WebSocket protocol is made, nothing else is read."""
    hint = pressure.refused(bound)
    AUTHENTICATING_REFUSED.inc()
    _refused("busy", None, f"{pressure.authenticating:,} connections authenticating (the bound is {bound:,}); "
             f"answered 503, retry after {hint} s", counted=False)
    request.setResponseCode(BUSY_STATUS, BUSY_REASON.encode())
    request.setHeader(b"retry-after", str(hint).encode())
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    request.setHeader(b"connection", b"close")
    body = b"too many connections authenticating; retry after %d s\n" % hint
    request.setHeader(b"content-length", b"%d" % len(body))
    request.write(body)
    channel = request.channel  # (finish lets go of it)
    request.finish()
    channel.loseConnection()  # after what is written: the socket goes, not kept alive
    return NOT_DONE_YET


def _on_close(original: Any) -> Any:
    def onClose(self, wasClean, code, reason):
        if self.__dict__.pop("_deptcast_preauth", False):
            pressure.authenticating -= 1
            timer = self.__dict__.pop("_deptcast_auth_timer", None)
            if timer is not None and timer.active():
                timer.cancel()
        return original(self, wasClean, code, reason)
    return onClose


def _auth_expired(protocol: Any) -> None:
    protocol._deptcast_auth_timer = None
    if protocol.state != protocol.STATE_OPEN:
        return
    _refused("auth_timeout", None, f"not authenticated within {_wiring.auth_timeout:g} s")
    close(protocol, b"not authenticated in time")


def close(protocol: Any, reason: bytes) -> None:
    """Close ``protocol`` with 1008: a close frame (``sendClose`` lets an application send only
    1000 and 3000-4999, so the frame is sent directly, as the drain does), which Autobahn's close
    handshake timeout turns into an abort if the peer does not answer; an abort at once if even
    that fails. Never raises (it runs inside the broker's delivery loop)."""
    try:
        protocol.sendCloseFrame(code=POLICY_VIOLATION, reasonUtf8=reason, isReply=False)
        if protocol.closeHandshakeTimeout:
            return
    except Exception:  # a transport already failing: the abort below ends it
        pass
    try:
        protocol.dropConnection(abort=True)
    except Exception:  # already gone
        pass


def _on_open(original: Any) -> Any:
    def onOpen(self):
        # the limits Autobahn copied from the factory when the connection was made: the
        # small one until the session is attached
        self.maxMessagePayloadSize = _smaller(self.maxMessagePayloadSize, PREAUTH_BYTES)
        self.maxFramePayloadSize = _smaller(self.maxFramePayloadSize, PREAUTH_BYTES)
        self._deptcast_preauth = True
        pressure.authenticating += 1
        if _wiring.auth_timeout > 0:
            self._deptcast_auth_timer = txaio.call_later(_wiring.auth_timeout, _auth_expired, self)
        return original(self)
    return onOpen


def _smaller(limit: int, bound: int) -> int:
    return bound if limit <= 0 else min(limit, bound)


def authenticated(protocol: Any) -> None:
    """The connection's session is attached: its transport's own limits again, no timer, and
    a fresh sending route for the hot path."""
    if not protocol.__dict__.pop("_deptcast_preauth", False):
        return
    pressure.authenticating -= 1
    pressure.authenticated()
    timer = protocol.__dict__.pop("_deptcast_auth_timer", None)
    if timer is not None and timer.active():
        timer.cancel()
    factory = protocol.factory
    protocol.maxMessagePayloadSize = factory.maxMessagePayloadSize
    protocol.maxFramePayloadSize = factory.maxFramePayloadSize
    serializer = getattr(protocol, "_serializer", None)
    if serializer is not None:
        serializer.__dict__.pop(ROUTE_ATTRIBUTE, None)


def _attach(original: Any) -> Any:
    def attach(self, session):
        answer = original(self, session)
        transport = getattr(session, "_transport", None)
        if isinstance(transport, WampWebSocketServerProtocol):
            authenticated(transport)
        return answer
    return attach


def _bound_before_auth(wiring: Wiring) -> None:
    wire(wiring)
    AUTHENTICATING.set_function(lambda: pressure.authenticating)
    replace("autobahn.twisted.resource.WebSocketResource.render", WebSocketResource, "render",
            _render(WebSocketResource.render))
    replace("crossbar.router.protocol.WampWebSocketServerProtocol.onClose", WampWebSocketServerProtocol,
            "onClose", _on_close(WampWebSocketServerProtocol.onClose))
    replace("crossbar.router.protocol.WampWebSocketServerProtocol.onOpen", WampWebSocketServerProtocol, "onOpen",
            _on_open(WampWebSocketServerProtocol.onOpen))
    replace("crossbar.router.router.Router.attach", Router, "attach", _attach(Router.attach))


BEFORE_AUTH = register(Patch(
    name="bounds.before_auth",
    replaces=("crossbar.router.protocol.WampWebSocketServerProtocol.onOpen", "crossbar.router.router.Router.attach",
              "autobahn.twisted.resource.WebSocketResource.render",
              "crossbar.router.protocol.WampWebSocketServerProtocol.onClose"),
    checked={
        # an upgrade request of /ws reaches the WebSocket protocol only through this (refused before it)
        "autobahn.twisted.resource.WebSocketResource.render":
            "6ecfc501d8f550fbbc6568fb85064af67a772fbab3c4aa864067be19baf53e68",
        "crossbar.router.protocol.WampWebSocketServerProtocol.onClose":
            "1a1a105f570b5313b88983269c185463450e733cd6b6d01ef1a93b58b7acdf6b",
        # onClose follows every lost connection, opened or not (the count of those authenticating)
        "autobahn.websocket.protocol.WebSocketProtocol._connectionLost":
            "046b5f6f05b6cb826ccfe3f371d74172d3439af05ba9b2f406cef363e75c6399",
        "crossbar.router.protocol.WampWebSocketServerProtocol.onOpen":
            "505d0f9b40bfb83a14a95c515a4261e55dd861cc2f925596a8490c70c69ad3ff",
        "crossbar.router.router.Router.attach":
            "efbbab4706e175a81ba65bb0cdba9bb13a4a5905c6bd4a825915f3d7a9e5c158",
        # where the limits are checked, as each frame's length is read
        "autobahn.websocket.protocol.WebSocketProtocol.onMessageFrameBegin":
            "68c4eae4de95e1fbf9a932f8e5bc8b7262120f1a37c104c7ebbd18c3a5d731e7",
        # the router session attaches the session once authentication is done
        "crossbar.router.session.RouterSession.onMessage":
            "d1d2ba97cc3676710c92d8a345cb5bb006c84e84040c5ef0596efa4c788e816a",
    },
    why="Crossbar reads and parses a HELLO as large as an authenticated session's largest message (about 448 KiB) "
        "and keeps a connection that never authenticates: 30 HELLOs of 420 KB cost the router 6.4 s of CPU; and it "
        "starts every connection that comes, however many are still authenticating: 18,000 clients of a failed "
        "node came to the survivor at once, their handshakes outlasted the clients' wait, and they came again "
        "(225,441 attempts, 4,818 back after 10 minutes)",
    remove_when="Crossbar bounds the size of HELLO/AUTHENTICATE, the time to authenticate and the connections "
                "authenticating at once",
    apply=_bound_before_auth,
))


# -- after authentication: the outgoing buffer -----------------------------------------------

def behind(transport: Any) -> int:
    """Bytes Twisted holds for ``transport`` (a :class:`twisted.internet.tcp.Connection`) that
    the socket has not taken; 0 for any other kind of transport."""
    try:
        return len(transport.dataBuffer) - transport.offset + transport._tempDataLen
    except AttributeError:
        return 0


def send_buffer() -> int:
    """Bytes a connection may fall behind by (0: no bound)."""
    return _wiring.send_buffer


def fell_behind(protocol: Any, buffered: int) -> None:
    """Close ``protocol``, ``buffered`` bytes behind: a 1008 close frame after what it has not
    read yet, and Autobahn's close-handshake timeout aborts it if it does not read that."""
    if protocol.state != protocol.STATE_OPEN:
        return
    session = getattr(protocol, "_session", None)
    _refused("slow_reader", getattr(session, "_authid", None),
             f"{buffered:,} bytes not read (the bound is {_wiring.send_buffer:,})")
    close(protocol, b"too far behind; resume by position")


# -- after authentication: calls in flight, subscriptions ----------------------------------

_CLIENT_ROLES = frozenset(names.CLIENT_ROLES)


def _refuse(router: Any, session: Any, request_type: int, request: int, error: str, text: str) -> None:
    router.send(session, message.Error(request_type, request, error, [text]))


def _process_call(original: Any) -> Any:
    def processCall(self, session, call):
        limit = _wiring.calls_in_flight
        if limit and getattr(session, "_authrole", None) in _CLIENT_ROLES \
                and len(self._caller_to_invocations.get(session, ())) + localcalls.in_flight(session) >= limit:
            CALLS_REFUSED.inc()
            return _refuse(self._router, session, message.Call.MESSAGE_TYPE, call.request, RATE_LIMITED,
                           f"more than {limit} calls in flight on this session: wait for their answers")
        return original(self, session, call)
    return processCall


def _process_subscribe(original: Any) -> Any:
    def processSubscribe(self, session, subscribe):
        limit = _wiring.max_subscriptions
        if limit and getattr(session, "_authrole", None) in _CLIENT_ROLES:
            held = self._session_to_subscriptions.get(session, ())
            if len(held) >= limit and not any(s.uri == subscribe.topic for s in held):
                return _refuse(self._router, session, message.Subscribe.MESSAGE_TYPE, subscribe.request,
                               NOT_AUTHORIZED_WAMP, f"a session may hold {limit} subscriptions at most")
        return original(self, session, subscribe)
    return processSubscribe


def _bound_sessions(wiring: Wiring) -> None:
    wire(wiring)
    replace("crossbar.router.dealer.Dealer.processCall", Dealer, "processCall", _process_call(Dealer.processCall))
    replace("crossbar.router.broker.Broker.processSubscribe", Broker, "processSubscribe",
            _process_subscribe(Broker.processSubscribe))


PER_SESSION = register(Patch(
    name="bounds.per_session",
    replaces=("crossbar.router.dealer.Dealer.processCall", "crossbar.router.broker.Broker.processSubscribe"),
    checked={
        "crossbar.router.dealer.Dealer.processCall":
            "683304b2067781e0a80c90609f1074dc8b2cd8775f94933e2ecc48e3a78e2292",
        # where the dealer keeps a caller's invocations in flight
        "crossbar.router.dealer.Dealer._call":
            "048dae3f99a105d41f565815497ecfd5fbe561239614060669bf6d0835481f6a",
        "crossbar.router.broker.Broker.processSubscribe":
            "9f5499a99f1210edee779f98de05ca41f196f3d0168b74600a087de85eb33f18",
    },
    why="Crossbar lets one session have any number of calls in flight and subscriptions: a client could queue "
        "thousands of history calls at once, or a publisher subscribe to a million department topics, each "
        "held in the router's memory",
    remove_when="Crossbar bounds a session's calls in flight and subscriptions",
    apply=_bound_sessions,
))

#: the patches of this area
PATCHES = (BEFORE_AUTH, PER_SESSION)

__all__ = ["PATCHES", "PREAUTH_BYTES", "ROUTE_ATTRIBUTE", "authenticated", "behind", "fell_behind", "send_buffer"]
