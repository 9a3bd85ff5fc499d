"""One WAMP session per router worker for the node's own non-WAMP front doors.

The legacy endpoint and the HTTP send API run inside the router worker (Crossbar mounts
them as Twisted resources). Both reach the realm through this one session, joined over the
node-local Unix socket (role ``deptcast-backend``): senders go through
``deptcast.internal.send_as`` -- the same validation, authorization, rate limit, store and
publish as ``deptcast.send`` -- and legacy sockets share reference-counted subscriptions.

The socket's transport starts after the web transport and the api component joins later
still, so the session connects in the background and reconnects whenever it is lost.
"""

from typing import Any, Callable, List, Optional

from autobahn.twisted.rawsocket import WampRawSocketClientFactory
from autobahn.twisted.wamp import ApplicationSession
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.serializer import MsgPackSerializer
from autobahn.wamp.types import ComponentConfig
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import defer, reactor
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.logger import Logger

from components import names
from components.errors import UNAVAILABLE, Refused
from components.nodeconfig import BACKEND_SOCKET
from components.tokens import Identity

#: how long a request waits for the bridge session before it is refused as unavailable
READY_TIMEOUT = 10.0


class _BridgeSession(ApplicationSession):
    """The WAMP side: joins anonymously and tells the :class:`Bridge` when it is up or down."""

    def __init__(self, config: ComponentConfig, bridge: "Bridge") -> None:
        super().__init__(config)
        self._bridge = bridge

    def onConnect(self):
        self.join(names.REALM)

    def onJoin(self, details):
        self._bridge._joined(self)

    def onLeave(self, details):
        self._bridge._lost(self, details.reason)
        super().onLeave(details)

    def onDisconnect(self):
        self._bridge._lost(self, "disconnected")


class Bridge:
    """The router worker's bridge session, kept connected in the background.

    :param socket_path: the node-local rawsocket, relative to the worker's directory
    """

    log = Logger()

    def __init__(self, socket_path: str = BACKEND_SOCKET, clock=reactor) -> None:
        self._clock = clock
        self._session: Optional[_BridgeSession] = None
        self._waiters: List[defer.Deferred] = []
        self._on_join: List[Callable[[ApplicationSession], None]] = []
        self._on_lost: List[Callable[[], None]] = []
        factory = WampRawSocketClientFactory(
            lambda: _BridgeSession(ComponentConfig(realm=names.REALM), self),
            serializer=MsgPackSerializer())
        endpoint = UNIXClientEndpoint(clock, socket_path)
        # quick retries at first: the socket's transport starts moments after the web transport
        self._service = ClientService(endpoint, factory, retryPolicy=backoffPolicy(0.1, 5.0), clock=clock)
        self._socket_path = socket_path

    def start(self) -> None:
        if not self._service.running:
            self.log.info("deptcast bridge: connecting to {path}", path=self._socket_path)
            self._service.startService()

    def stop(self) -> defer.Deferred:
        return defer.maybeDeferred(self._service.stopService)

    @property
    def session(self) -> Optional[ApplicationSession]:
        """The joined session, or ``None`` while (re)connecting."""
        return self._session

    def on_join(self, callback: Callable[[ApplicationSession], None]) -> None:
        """Call ``callback(session)`` each time the session (re)joins."""
        self._on_join.append(callback)

    def on_lost(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` each time the session is lost."""
        self._on_lost.append(callback)

    def _joined(self, session: _BridgeSession) -> None:
        self._session = session
        self.log.info("deptcast bridge: joined realm {realm} (session {id})",
                      realm=names.REALM, id=session._session_id)
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            if not d.called:
                d.callback(session)
        for callback in self._on_join:
            callback(session)

    def _lost(self, session: _BridgeSession, reason: str) -> None:
        if self._session is not session:
            return
        self._session = None
        self.log.warn("deptcast bridge: session lost ({reason}); reconnecting", reason=reason)
        for callback in self._on_lost:
            callback()

    def ready(self, timeout: float = READY_TIMEOUT) -> defer.Deferred:
        """Fire with the joined session; fail with ``Refused(unavailable)`` after ``timeout``.

        :rtype: Deferred
        """
        if self._session is not None:
            return defer.succeed(self._session)
        d: defer.Deferred = defer.Deferred()
        self._waiters.append(d)

        def timed_out(failure):
            failure.trap(defer.TimeoutError, defer.CancelledError)
            if d in self._waiters:
                self._waiters.remove(d)
            raise Refused(UNAVAILABLE, "the node's message service is not reachable yet; retry shortly")
        d.addTimeout(timeout, self._clock)
        return d.addErrback(timed_out)

    @defer.inlineCallbacks
    def send_as(self, identity: Identity, to: Any, message: Any):
        """Send as ``identity`` through ``deptcast.internal.send_as``; fire with the envelope.

        :raises Refused: with the contract's URI for a refused send; ``unavailable`` if the
            api component cannot be reached
        """
        session = yield self.ready()
        try:
            envelope = yield session.call(names.PROC_SEND_AS, identity.user, identity.dept,
                                          identity.role, to, message)
        except ApplicationError as e:
            if e.error.startswith("deptcast.error."):
                raise Refused(e.error, e.args[0] if e.args else e.error) from None
            # e.g. wamp.error.no_such_procedure while the api component (re)starts
            self.log.warn("deptcast bridge: send_as failed: {error}", error=e.error)
            raise Refused(UNAVAILABLE, "the node's message service is not available; retry shortly") from None
        return envelope

    def subscribe(self, handler: Callable[..., None], topic: str) -> defer.Deferred:
        """Subscribe ``handler`` to ``topic`` on the current session.

        :rtype: Deferred firing with an autobahn ``Subscription``
        """
        if self._session is None:
            return defer.fail(Refused(UNAVAILABLE, "the bridge session is not joined"))
        return self._session.subscribe(handler, topic)


_bridge: Optional[Bridge] = None


def get_bridge() -> Bridge:
    """The router worker's one bridge, started on first use.

    :rtype: Bridge
    """
    global _bridge
    if _bridge is None:
        _bridge = Bridge()
        _bridge.start()
    return _bridge

