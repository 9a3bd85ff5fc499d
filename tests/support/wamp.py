"""A real Autobahn|Python WAMP client for tests: connect with a token, collect events."""

from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, List, Optional

from autobahn.twisted.rawsocket import WampRawSocketClientFactory
from autobahn.twisted.wamp import ApplicationSession
from autobahn.twisted.websocket import WampWebSocketClientFactory
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.serializer import MsgPackSerializer
from autobahn.wamp.types import ComponentConfig
from autobahn.websocket.util import parse_url
from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, UNIXClientEndpoint

from components.core.names import REALM
from tests.support.nodes import INSPECT_SOCKET


class JoinRefused(Exception):
    """The router refused the session; ``reason`` is the WAMP error URI."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(reason, message)
        self.reason = reason
        self.message = message


class Client(ApplicationSession):
    """A test session that records every event it receives, per topic."""

    def __init__(self, config, token: Optional[str], authid: Optional[str], joined: defer.Deferred,
                 authmethods=("ticket",)):
        super().__init__(config)
        self._authmethods = list(authmethods)
        self._token = token
        self._authid = authid
        self._joined = joined
        self.events: Dict[str, List[Any]] = defaultdict(list)
        self.closed = defer.Deferred()

    def onConnect(self):
        self.join(REALM, authmethods=self._authmethods, authid=self._authid)

    def onChallenge(self, challenge):
        return self._token

    def onJoin(self, details):
        self.details = details
        if not self._joined.called:
            self._joined.callback(self)

    def onLeave(self, details):
        self.left_with = details
        if not self._joined.called:
            self._joined.errback(JoinRefused(details.reason, details.message))
        super().onLeave(details)

    def onDisconnect(self):
        if not self._joined.called:
            self._joined.errback(JoinRefused("disconnected", "connection closed before join"))
        if not self.closed.called:
            self.closed.callback(None)

    @defer.inlineCallbacks
    def listen(self, topic: str):
        """Subscribe to ``topic``, recording each event's envelope in ``self.events[topic]``."""
        def on_event(envelope, *args, **kwargs):
            self.events[topic].append(envelope)
        sub = yield self.subscribe(on_event, topic)
        return sub

    def messages(self, topic: str) -> List[str]:
        return [e["message"] for e in self.events[topic]]

    def close(self) -> defer.Deferred:
        if self.is_connected():
            self.leave()
        return self.closed


def connect(url: str, token: Optional[str], authid: Optional[str] = None,
            serializers=None, timeout: float = 10.0, authmethods=("ticket",)) -> defer.Deferred:
    """Connect and join realm ``deptcast``; fires with the :class:`Client` or fails with
    :class:`JoinRefused`."""
    joined: defer.Deferred = defer.Deferred()

    def make():
        return Client(ComponentConfig(realm=REALM), token, authid, joined, authmethods)

    factory = WampWebSocketClientFactory(make, url=url, serializers=serializers)
    _, host, port, _, _, _ = parse_url(url)
    d = TCP4ClientEndpoint(reactor, host, port).connect(factory)
    d.addErrback(lambda f: joined.called or joined.errback(f))
    return joined.addTimeout(timeout, reactor)


def call_error(d: defer.Deferred) -> defer.Deferred:
    """Fire with the ``ApplicationError`` a call failed with; fail if the call succeeded."""
    def ok(result):
        raise AssertionError(f"expected an error, the call returned {result!r}")

    def err(failure):
        failure.trap(ApplicationError)
        return failure.value
    return d.addCallbacks(ok, err)


@defer.inlineCallbacks
def wait_for(predicate, timeout: float = 10.0, what: str = "a condition", interval: float = 0.02):
    """Wait without blocking the reactor until ``predicate()`` is true."""
    deadline = reactor.seconds() + timeout
    while not predicate():
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        yield task.deferLater(reactor, interval, lambda: None)


# -- the tests' inspector session, for the router's meta API


class _Inspector(ApplicationSession):
    def __init__(self, config, joined: defer.Deferred) -> None:
        super().__init__(config)
        self._joined_d = joined

    def onConnect(self):
        self.join(REALM)

    def onJoin(self, details):
        self._joined_d.callback(self)


def connect_inspector(node_dir: Path, timeout: float = 10.0) -> defer.Deferred:
    """Join the realm over a test node's inspector socket (see :func:`tests.support.nodes.with_inspector`),
    whose role may only read the meta API: who is subscribed to what."""
    joined: defer.Deferred = defer.Deferred()
    factory = WampRawSocketClientFactory(lambda: _Inspector(ComponentConfig(realm=REALM), joined),
                                         serializer=MsgPackSerializer())
    d = UNIXClientEndpoint(reactor, str(Path(node_dir) / INSPECT_SOCKET)).connect(factory)
    d.addErrback(lambda f: joined.called or joined.errback(f))
    return joined.addTimeout(timeout, reactor)


@defer.inlineCallbacks
def subscriber_count(backend: ApplicationSession, topic: str):
    """How many sessions the router has subscribed to ``topic`` (exact match); 0 if none."""
    sub_id = yield backend.call("wamp.subscription.lookup", topic)
    if sub_id is None:
        return 0
    try:
        count = yield backend.call("wamp.subscription.count_subscribers", sub_id)
    except ApplicationError as e:
        if e.error != "wamp.error.no_such_subscription":
            raise
        return 0  # the last subscriber left between the two calls
    return count
