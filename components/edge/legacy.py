"""``/webSocket/<key>``: the old service's endpoint, a thin Twisted adapter over
:mod:`components.core.legacy` and :mod:`components.core.frames`.

Mounted in the node's web transport as a Twisted resource (``"type": "resource"``), so it
runs inside the router worker, on the same port as ``/ws`` and ``/``. Crossbar's own
``websocket-reverseproxy`` would drop the path and with it the key, hence a resource of ours.

* Handshake: :func:`legacyframes.check_handshake` decides (bad key 400, missing/bad token 401,
  a key that is not the token's 403); the token comes in the subprotocol
  ``deptcast.token.<JWT>`` (answered ``deptcast.legacy``) or in ``?token=``. The socket opens
  only once its topics are subscribed, so a client receives every message sent after its
  WebSocket opened.
* In: ``ping`` is ignored; ``{"to", "message"}`` goes to the node's
  :class:`~components.service.messaging.MessageService`, in this process: the same checks,
  error URIs, rate limit, store and publish as ``deptcast.send``. A refusal is a JSON error
  frame and the socket stays open. Binary frames and frames over :func:`frames.frame_cap`
  are discarded as they arrive (never buffered) and answered with an error frame.
* Out: :class:`~components.edge.fanout.Fanout` holds one subscription per topic for all the
  worker's legacy sockets (reference-counted) and frames each event once
  (``prepareMessage``), writing the same bytes to every socket of the topic; it delivers
  each message once, in ``seq`` order, reading from the store what the router missed.
* Presence: an open socket counts its key's user online (:mod:`components.wamp.presence`).
* Liveness: WebSocket auto ping; a peer that does not answer in time is dropped, and the
  last socket of a topic to go releases its subscription. A peer that stops reading is
  dropped once it is :data:`MAX_SEND_BACKLOG` bytes behind, before the ping notices.
"""

from typing import Any, Dict, Optional, Tuple

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.protocol import PreparedMessage
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer
import txaio
from zope.interface import implementer

from components.core import frames, names
from components.core import legacy as legacyframes
from components.core.errors import INVALID_FRAME, UNAVAILABLE, Refused
from components.core.metrics import CONNECTIONS_CLOSED, count_refusal
from components.core.legacy import HandshakeRefused, KeyPattern, LegacyClient
from components.core.logsummary import host_of
from components.core.settings import PING_INTERVAL_MS, PING_TIMEOUT_MS, Settings
from components.core.tokens import Identity
from components.edge.fanout import Fanout, ServiceReader, SlotBridge
from components.service.refusals import RefusalLog
from components.service.runtime import Runtime, runtime

txaio.use_twisted()  # a Twisted module: its txaio loggers are Twisted's

#: a frame this large closes the connection (1009) instead of being read and discarded: past
#: this a client is not an old page with a long message but something to be cut off
HARD_FRAME_LIMIT = 64 * 1024 * 1024
#: seconds a client has to complete the opening handshake
OPEN_HANDSHAKE_TIMEOUT = 10.0
#: bytes of messages a socket may fall behind by (beyond the kernel's and Twisted's own send
#: buffers) before it is dropped: a page that stops reading must not make the router hold
#: every message for it until the ping timeout notices
MAX_SEND_BACKLOG = 2 * 1024 * 1024
#: the WebSocket close codes of a session's end
CLOSE_CODES = {names.CLOSE_TOKEN_EXPIRED: 4001, names.CLOSE_REVOKED: 4003}


@implementer(IPushProducer)
class _SendBacklog:
    """Twisted pauses this when the socket's send buffer is full and resumes it once drained;
    the protocol counts what it queues in between."""

    def __init__(self, protocol: "LegacyServerProtocol") -> None:
        self._protocol = protocol

    def pauseProducing(self) -> None:
        self._protocol._write_paused = True

    def resumeProducing(self) -> None:
        self._protocol._write_paused = False
        self._protocol._backlog = 0

    def stopProducing(self) -> None:
        pass


class LegacyServerProtocol(WebSocketServerProtocol):
    """One old-style client: a key, a sender identity, text frames in and out."""

    log = txaio.make_logger()

    _client: Optional[LegacyClient] = None
    _joined_topics: tuple = ()
    _discarding = False
    _incoming = 0
    _write_paused = False
    _backlog = 0
    #: (dept, user) of a token-checked socket, whose writes count as delivered (not open mode)
    receipt_user: Optional[Tuple[str, str]] = None

    @defer.inlineCallbacks
    def onConnect(self, request: ConnectionRequest):  # type: ignore[override]  # Autobahn waits on a Deferred
        factory: LegacyServerFactory = self.factory
        try:
            if factory.refusal is not None:
                raise factory.refusal
            # the token comes in a subprotocol (which no proxy logs) or in ?token=
            client = legacyframes.check_handshake(request.path, request.params, factory.pattern,
                                                  factory.settings.jwt_secret, factory.settings.legacy_open,
                                                  request.protocols, factory.settings.max_token_ttl)
            if client.grant is not None:
                if not factory.runtime.sessions.loaded:  # a starting node: the revocations in force first
                    yield factory.runtime.sessions.when_loaded(factory.ready_timeout)
                try:
                    factory.runtime.sessions.check(client.grant)
                except Refused as e:
                    raise HandshakeRefused(401, e.uri, e.detail) from None
        except HandshakeRefused as e:
            factory.connection_refusals.refused(e.uri, host_of(request.peer), f"{e.status} {e.detail}")
            raise ConnectionDeny(e.status, e.reason)
        self._client = client
        self._joined_topics = client.topics
        if not client.open_mode:
            # receipts: a token-checked socket's writes count as delivered (set before it joins its topics)
            self.receipt_user = (client.identity.dept, client.identity.user)
        try:
            yield factory.fanout.join(self, client.topics).addTimeout(factory.ready_timeout, factory.reactor)
        except Exception as e:
            factory.connection_refusals.refused(UNAVAILABLE, client.key, f"subscriptions not ready: {e}")
            raise ConnectionDeny(503, legacyframes.safe_reason(
                f"{UNAVAILABLE}: the node's message service is not reachable yet; retry shortly"))
        if self.state == self.STATE_CLOSED:
            # the peer went while we subscribed (onClose has released its topics): do not
            # let autobahn open, and start pinging, a socket that is already gone
            raise ConnectionDeny(400, "the connection closed during the handshake")
        # deptcast.legacy if the page offered it: a browser that offered subprotocols fails
        # the connection unless the answer names one of them
        return client.protocol

    def onOpen(self) -> None:
        # The HTTP channel that served the upgrade is still the transport's producer; put ours
        # in its place to learn when this peer stops draining its socket.
        try:
            self.transport.unregisterProducer()  # type: ignore[attr-defined]  # IConsumer's: caught below if not
            self.transport.registerProducer(_SendBacklog(self), True)  # type: ignore[attr-defined]  # IConsumer's: caught below if not
        except Exception as e:  # a transport without producer support: no backlog limit
            self.log.debug("deptcast legacy: no send backlog tracking: {e}", e=str(e))
        self.factory.runtime.health.legacy_opened(self)
        self.log.debug("deptcast legacy: {key} connected ({mode})", key=self._client.key,
                       mode="open mode" if self._client.open_mode else self._client.identity.role)
        # presence counts the key's user online, as it counts a WAMP session
        self.factory.runtime.legacy_users.opened(self, self._client.identity.dept, self._client.identity.user)
        if not self._client.open_mode and self._client.identity.role == names.MEMBER:
            # a token-checked member goes on its department's roster (written in bulk)
            self.factory.runtime.signins.signed_in(self._client.identity.dept, self._client.identity.user)
        # the token's life: closed 4001 at exp, 4003 when the user is revoked (open mode: no exp)
        grant = self._client.grant
        self.factory.runtime.sessions.joined(self, self._client.identity.dept, self._client.identity.user,
                                             grant.iat if grant else None, grant.exp if grant else None, self._end)

    def _end(self, reason: str) -> None:
        self.sendClose(CLOSE_CODES.get(reason, 1008), reason)

    def onClose(self, wasClean: bool, code: Optional[int], reason: Optional[str]) -> None:
        self.factory.runtime.legacy_users.closed(self)
        self.factory.runtime.sessions.left(self)
        self.factory.runtime.health.legacy_closed(self)
        if self._joined_topics:
            self.factory.fanout.leave(self, self._joined_topics)
            self._joined_topics = ()
            if self._client is not None:
                self.log.debug("deptcast legacy: {key} gone (clean={clean}, code={code})",
                               key=self._client.key, clean=wasClean, code=code)

    def deliver(self, prepared: PreparedMessage) -> bool:
        """Write one pre-framed message (the fan-out calls this for every socket of a topic);
        answer whether it was written."""
        if self.state != self.STATE_OPEN:
            return False
        if self._fell_behind(len(prepared.payloadHybi)):
            return False
        if prepared.doNotCompress:
            # what sendPreparedMessage does with a frame never to be compressed (ours), one call less
            self.sendData(prepared.payloadHybi)
        else:
            self.sendPreparedMessage(prepared)
        return True

    def _fell_behind(self, size: int) -> bool:
        """Count ``size`` bytes about to be written while the socket is not draining; past the
        backlog bound, drop the connection (no close frame would reach a peer that does not
        read) and answer ``True``."""
        if not self._write_paused:
            return False
        self._backlog += size
        if self._backlog <= self.factory.max_send_backlog:
            return False
        CONNECTIONS_CLOSED.labels("slow_reader").inc()
        self.factory.connection_refusals.refused("slow_reader", self._client.key if self._client else None,
                                                 f"not reading; dropped {self._backlog:,} bytes behind")
        self._write_paused = False
        self.dropConnection(abort=True)
        return True

    # -- incoming frames, read through autobahn's frame hooks so that a binary or oversize
    #    message is dropped as it arrives instead of being buffered whole

    def onMessageBegin(self, isBinary: bool) -> None:
        super().onMessageBegin(isBinary)
        self._discarding = isBinary
        self._incoming = 0

    def onMessageFrameBegin(self, length: int) -> None:
        self._incoming += length
        if not self._discarding and self._incoming > self.factory.frame_cap:
            self._discarding = True
            self.message_data = []  # free what earlier fragments kept
        super().onMessageFrameBegin(length)

    def onMessageFrameData(self, payload: bytes) -> None:
        if not self._discarding:
            super().onMessageFrameData(payload)

    def onMessageFrameEnd(self) -> None:
        if self._discarding:
            self.frame_data = None
            return
        super().onMessageFrameEnd()

    def onMessageEnd(self) -> None:
        if not self._discarding:
            super().onMessageEnd()  # -> onMessage
            return
        self.message_data = None
        if self.message_is_binary:
            refusal = Refused(INVALID_FRAME, "binary frames are not supported; send JSON text frames")
        else:
            refusal = frames.oversize_refusal(self._incoming, self.factory.frame_cap)
        count_refusal("legacy", refusal.uri)
        self._refuse_frame(refusal)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        try:
            frame = frames.parse_frame(payload, isBinary)
        except Refused as e:
            count_refusal("legacy", e.uri)
            self._refuse_frame(e)
            return
        if frame is None:
            return  # the old heartbeat: it kept the connection busy, nothing to answer
        to = legacyframes.contract_target(frame.to, self.factory.pattern)
        d = self.factory.send(self._client.identity, to, frame.message)
        d.addErrback(self._send_failed)

    def _send_failed(self, failure) -> None:
        if failure.check(Refused):
            self._refuse(failure.value)  # counted by the send path
        else:
            self.factory.frame_refusals.failed(failure, self._client.key)
            self._refuse(Refused(UNAVAILABLE, "the message could not be sent; retry shortly"))

    def _refuse_frame(self, refusal: Refused) -> None:
        """Refuse a frame that is not a send at all (the send path never sees it)."""
        self.factory.frame_refusals.refused(refusal.uri, self._client.key if self._client else None, refusal.detail)
        self._refuse(refusal)

    def _refuse(self, refusal: Refused) -> None:
        self.log.debug("deptcast legacy: {key}: {uri}", key=self._client.key if self._client else "?",
                       uri=refusal.uri)
        if self.state == self.STATE_OPEN:
            # an error reply is output like a message: a peer that sends without reading is
            # held to the same backlog (a 6-byte frame can earn a 111-byte reply)
            reply = frames.error_frame(refusal.uri, refusal.detail)
            if not self._fell_behind(len(reply) + 4):
                self.sendMessage(reply, isBinary=False)


class LegacyServerFactory(WebSocketServerFactory):
    """The settings, the fan-out and the send path all legacy sockets of the worker share.

    :param settings: the node's settings (secret, key pattern, open mode, message limit)
    :param rt: the router worker's runtime (the message service, the bridge session)
    :param ping_interval: seconds between WebSocket pings (0: none)
    :param ping_timeout: seconds a peer has to answer a ping before it is dropped
    :param max_send_backlog: bytes a socket may fall behind by before it is dropped
    """

    protocol = LegacyServerProtocol
    log = txaio.make_logger()

    def __init__(self, settings: Optional[Settings], rt: Runtime, ping_interval: float,
                 ping_timeout: float, ready_timeout: float = 10.0, refusal: Optional[HandshakeRefused] = None,
                 max_send_backlog: int = MAX_SEND_BACKLOG) -> None:
        super().__init__()
        self.settings = settings
        self.max_send_backlog = max_send_backlog
        self.runtime = rt
        self.refusal = refusal
        self.pattern = KeyPattern(settings.legacy_key_pattern) if settings is not None else None
        self.frame_cap = frames.frame_cap(settings.max_message_bytes) if settings is not None else 0
        self.ready_timeout = ready_timeout
        self.connection_refusals = RefusalLog(self.log, "deptcast legacy", "connection", "connections")
        self.frame_refusals = RefusalLog(self.log, "deptcast legacy", "frame", "frames")
        self.fanout = Fanout(SlotBridge(rt.bridge),
                             lambda payload: self.prepareMessage(payload, isBinary=False, doNotCompress=True),
                             reader=ServiceReader(rt.messages), links=rt.links, receipts=rt.receipts)
        self.setProtocolOptions(
            autoPingInterval=ping_interval,
            autoPingTimeout=ping_timeout,
            # any frame from the peer (an old page's "ping" too) proves it is alive
            autoPingRestartOnAnyTraffic=True,
            openHandshakeTimeout=OPEN_HANDSHAKE_TIMEOUT,
            closeHandshakeTimeout=5.0,
            # frames between frame_cap and this are read and discarded; past it, close with 1009
            maxMessagePayloadSize=HARD_FRAME_LIMIT,
            maxFramePayloadSize=HARD_FRAME_LIMIT,
            # a client behind a proxy may have no Origin the old server checked; tokens, not cookies
            # authenticate, so any origin may connect
            allowedOrigins=["*"],
            # a plain GET gets a handshake error, not autobahn's HTML status page
            webStatus=False,
        )

    def send(self, identity: Identity, to: Any, message: Any) -> defer.Deferred:
        """Send through the node's message service; fire with the envelope.

        :raises Refused: the contract's refusal, or ``unavailable`` while the service starts
        """
        d = self.runtime.messages.get(self.ready_timeout)
        d.addErrback(self._not_ready, identity.key)
        return d.addCallback(lambda service: service.send(identity, to, message, interface="legacy"))

    def _not_ready(self, failure, who: str):
        failure.trap(Refused)  # the node is starting: the send path never saw this frame
        self.frame_refusals.refused(failure.value.uri, who, failure.value.detail)
        return failure


class LegacyResource(WebSocketResource):
    """The Twisted resource Crossbar mounts at ``webSocket`` (``/webSocket/<key>``).

    Every request below the mount reaches :meth:`render` (a leaf); the protocol reads the key
    from the request path again during the handshake.

    :param extra: the path's ``extra`` dict in the node config: ``auto_ping_interval`` and
        ``auto_ping_timeout`` in milliseconds, as for Crossbar's own WebSocket transports,
        ``max_send_backlog`` in bytes, and ``max_message_bytes``, the message limit the
        config's WebSocket caps were made for (a warning at start if the setting is larger)
    """

    log = txaio.make_logger()

    def __init__(self, extra: Optional[Dict[str, Any]] = None, rt: Optional[Runtime] = None) -> None:
        extra = extra or {}
        rt = rt or runtime()
        refusal = None
        settings = rt.settings_or_log(self.log, "legacy endpoint")
        if settings is None:
            refusal = HandshakeRefused(503, UNAVAILABLE, "the legacy endpoint is misconfigured")
        interval = float(extra.get("auto_ping_interval", PING_INTERVAL_MS)) / 1000.0
        timeout = float(extra.get("auto_ping_timeout", PING_TIMEOUT_MS)) / 1000.0
        factory = LegacyServerFactory(settings, rt, interval, timeout, refusal=refusal,
                                      max_send_backlog=int(extra.get("max_send_backlog", MAX_SEND_BACKLOG)))
        super().__init__(factory)
        self.factory = factory
        if settings is not None:
            sized_for = int(extra.get("max_message_bytes", settings.max_message_bytes))
            if settings.max_message_bytes > sized_for:
                self.log.warn("deptcast legacy: DEPTCAST_MAX_MESSAGE_BYTES={limit}, but the node config's WebSocket "
                              "limits were made for messages of {sized_for} bytes: a WAMP client sending a larger "
                              "message is disconnected. Generate the config with --max-message-bytes {limit}.",
                              limit=settings.max_message_bytes, sized_for=sized_for)
            if settings.legacy_open:
                self.log.warn("deptcast legacy: OPEN MODE (DEPTCAST_LEGACY_OPEN=1): /webSocket/<key> accepts "
                              "clients without a token as members of the key's department; anyone can "
                              "connect as anyone. Turn it off once the old pages send tokens.")
            self.log.info("deptcast legacy: /webSocket/<key> ready (key pattern {pattern}, ping every {interval}s, "
                          "frames up to {cap} bytes)", pattern=settings.legacy_key_pattern,
                          interval=interval, cap=factory.frame_cap)
