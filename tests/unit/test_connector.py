"""The client's connection (``components.client.connector``) on a fake Autobahn ``Component``:
the URLs and the back-off, a refused token, a new start when the component ends, and a node
that drains."""

import pytest
from autobahn.wamp.exception import ApplicationError

from components.client import errors
from components.client.connector import Connector, parse_urls
from components.client.tx import Session
from components.core import names
from tests.support.client import FakeComponent, FakeSession, Harness


class Refusal:
    def __init__(self, reason):
        self.reason, self.message = reason, "the token has expired"


def _connector(h: Harness, token, urls=("ws://a/ws", "ws://b/ws")) -> Connector:
    return Connector(FakeComponent, Session, list(urls), token, h.engine, h.clock.callLater)


def test_the_component_gets_every_url_with_jittered_back_off_and_the_ticket():
    h = Harness()
    c = _connector(h, "tok")
    comp = c.component
    assert [t["url"] for t in comp.transports] == ["ws://a/ws", "ws://b/ws"]
    assert all(t["retry_delay_jitter"] > 0 and t["max_retries"] == -1 for t in comp.transports)
    assert comp.realm == names.REALM
    assert comp.authentication["ticket"].on_challenge(None, None) == "tok"
    assert comp.session_factory is Session   # accepts what a node sends after its GOODBYE


def test_a_fixed_token_refused_on_reconnect_stops_the_client():
    h = Harness()
    c = _connector(h, "tok")
    c.start()
    comp = c.component
    s = FakeSession(h.store)
    comp.handlers["join"](s, s.details)
    stopped = []
    h.engine.on_fatal(stopped.append)
    comp.handlers["disconnect"](s, False)
    refused = FakeSession(h.store)   # the reconnect: refused before it joins
    comp.handlers["leave"](refused, Refusal(errors.TokenExpired.URI))
    assert isinstance(h.engine.fatal, errors.TokenExpired) and stopped == [h.engine.fatal]
    assert comp.is_fatal(h.engine.fatal) is True   # Autobahn asks: every transport is then failed
    comp.done.errback(RuntimeError("Component failed: Exhausted all transport connect attempts"))
    assert c._done.called and comp.starts == 1


def test_a_provider_refused_is_asked_again_and_gives_up_after_three():
    h = Harness()
    c = _connector(h, lambda: "tok")
    c.start()
    comp = c.component
    s = FakeSession(h.store)
    comp.handlers["join"](s, s.details)
    comp.handlers["disconnect"](s, False)
    for _ in range(2):
        comp.handlers["leave"](FakeSession(h.store), Refusal(errors.TokenExpired.URI))
    assert h.engine.fatal is None and comp.is_fatal(Exception()) is False
    s2 = FakeSession(h.store, node="n2")
    comp.handlers["join"](s2, s2.details)   # the provider's next token works
    assert h.engine.fatal is None and h.engine.stats.reconnects == 1
    comp.handlers["disconnect"](s2, False)
    for _ in range(3):
        comp.handlers["leave"](FakeSession(h.store), Refusal(errors.InvalidToken.URI))
    assert isinstance(h.engine.fatal, errors.InvalidToken)


def test_the_component_starts_again_when_it_ends_unasked():
    h = Harness()
    c = _connector(h, "tok")
    c.start()
    comp = c.component
    comp.done.callback(None)      # e.g. the node closed the session cleanly
    assert comp.starts == 1
    h.clock.advance(45)
    assert comp.starts == 2
    comp._delay_f = object()      # waiting to try a transport again: Component.stop() cancels that
    d = c.stop()
    assert d.called and not h.clock.getDelayedCalls()


def test_parse_urls():
    assert parse_urls("ws://a:1/ws, ws://b:2/ws") == ["ws://a:1/ws", "ws://b:2/ws"]
    assert parse_urls(["ws://a:1/ws", "wss://c/ws"]) == ["ws://a:1/ws", "wss://c/ws"]
    for bad in ["", " , ", "http://a/ws", "a:1", "ws://" + "x" * 3000]:
        with pytest.raises(ValueError):
            parse_urls(bad)


class _Leave:
    def __init__(self, reason):
        self.reason, self.message = reason, ""


def test_a_draining_node_makes_the_next_attempt_go_at_once():
    """A node that stops tells its clients (GOODBYE wamp.close.system_shutdown) to go elsewhere:
    the back-off meant for failing nodes is cleared, so Autobahn tries again at once."""
    h = Harness()
    c = _connector(h, "tok")
    c.start()
    comp = c.component
    s = FakeSession(h.store)
    comp.handlers["join"](s, s.details)
    comp.handlers["leave"](s, _Leave("wamp.close.transport_lost"))
    assert [t.connect_attempts for t in comp._transports] == [3, 3]   # a failure keeps its back-off
    comp.handlers["leave"](s, _Leave(names.CLOSE_GOING_AWAY))
    assert [t.connect_attempts for t in comp._transports] == [0, 0]


def test_an_abort_without_a_message_is_judged_by_its_reason():
    """Autobahn turns an ABORT without a message into ``ApplicationError(reason, None)``: the
    client reads its reason, and the message as empty (``ApplicationError`` has no ``message``)."""
    h = Harness()
    c = _connector(h, "tok")
    c.start()
    assert c.component.is_fatal(ApplicationError(names.CLOSE_TOKEN_EXPIRED, None)) is True
    assert c.component.is_fatal(ApplicationError("wamp.error.no_such_realm")) is False
