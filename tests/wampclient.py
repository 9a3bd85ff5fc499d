"""A real Autobahn|Python WAMP client for tests: connect with a token, collect events."""

from collections import defaultdict
from typing import Any, Dict, List, Optional

from autobahn.twisted.wamp import ApplicationSession
from autobahn.twisted.websocket import WampWebSocketClientFactory
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import ComponentConfig
from autobahn.websocket.util import parse_url
from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint

from components.names import REALM


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
