"""The client's engine (``components.client.engine``) on fake sessions and a fake clock: what
reaches the application across gaps, out-of-order arrival via two nodes, duplicates from live
and history, reconnects, a refused token, and sends that the node refuses."""

from typing import Any, Dict, List, Optional

import pytest
import txaio

txaio.use_twisted()

from autobahn.wamp.exception import ApplicationError, TransportLost  # noqa: E402
from twisted.internet import defer, task  # noqa: E402

from components.client import errors  # noqa: E402
from components.client.connector import Connector, parse_urls  # noqa: E402
from components.client.engine import Engine  # noqa: E402
from components.client.ticket import TicketAuthenticator  # noqa: E402
from components.client.state import FileState, StateError  # noqa: E402
from components.core import names  # noqa: E402
from components.core.recovery import HISTORY_PAGE, START_PAGE, envelope_key  # noqa: E402
from components.core.targets import parse_target  # noqa: E402

DEPT, ALL, DM = "deptcast.dept.cardio", "deptcast.all", "deptcast.user.cardio_alice"


class FakeStore:
    """The store's history rules (ids in commit order, seq per topic, bounded pages)."""

    def __init__(self) -> None:
        self.rows: List[Dict[str, Any]] = []
        self.seq: Dict[str, int] = {}
        #: per topic, the seq up to which retention removed its messages
        self.floor: Dict[str, int] = {}

    def append(self, to: str, message: str, sender: str = "pat") -> Dict[str, Any]:
        target = parse_target(to)
        self.seq[target.topic] = self.seq.get(target.topic, 0) + 1
        env = {"id": f"{len(self.rows) + 1:016d}", "scope": target.scope, "target": target.target,
               "sender": sender, "sender_dept": "admin", "message": message, "ts": 1,
               "seq": self.seq[target.topic]}
        self.rows.append(env)
        return env

    def prune(self, topic: str, keep: int) -> None:
        """Retention: keep the newest ``keep`` messages of ``topic``."""
        cut = self.seq.get(topic, 0) - keep
        if cut > self.floor.get(topic, 0):
            self.floor[topic] = cut
            self.rows = [e for e in self.rows if envelope_key(e)[0] != topic or e["seq"] > cut]

    def history(self, topics, after=None, limit=100, latest=False, positions=None):
        if positions is not None:
            for topic in positions:
                if topic not in topics:
                    raise ApplicationError(errors.NotAuthorized.URI, "not yours")
            gone = sorted(t for t, seq in positions.items() if seq < self.floor.get(t, 0))
            if gone:
                raise ApplicationError(errors.Pruned.URI, f"removed by retention on {', '.join(gone)}")
            rows = [e for e in self.rows if envelope_key(e)[0] in positions
                    and e["seq"] > positions[envelope_key(e)[0]]]
            return [dict(e) for e in rows[:limit]]
        rows = [e for e in self.rows if envelope_key(e)[0] in topics and (after is None or e["id"] > after)]
        return [dict(e) for e in (rows[-limit:] if latest else rows[:limit])]


class FakeSession:
    """One session on one node: subscriptions, calls answered from the store."""

    def __init__(self, store: FakeStore, user="alice", dept="cardio", node="n1") -> None:
        self.store = store
        self.user, self.dept, self.node = user, dept, node
        self.handlers: Dict[str, Any] = {}
        self.attached = True
        self.calls: List[tuple] = []
        #: errors to raise from the next calls of a procedure, in order
        self.refuse: Dict[str, List[BaseException]] = {}
        #: calls of these procedures wait here until fired by the test
        self.hold: Dict[str, List[defer.Deferred]] = {}

    @property
    def details(self):
        class Details:
            authid = self.user
            authextra = {"dept": self.dept, "x_cb_node": self.node}
        return Details()

    def is_attached(self) -> bool:
        return self.attached

    def subscribe(self, handler, topic):
        self.handlers[topic] = handler
        return defer.succeed(None)

    def call(self, procedure, *args, **kwargs):
        self.calls.append((procedure, args, kwargs))
        if not self.attached:
            raise TransportLost()
        if self.refuse.get(procedure):
            return defer.fail(self.refuse[procedure].pop(0))
        if procedure in self.hold:
            d = defer.Deferred()
            self.hold[procedure].append(d)
            return d
        if procedure == names.PROC_HISTORY:
            return defer.succeed(self.store.history(names.client_topics(self.dept, self.user), **kwargs))
        if procedure == names.PROC_SEND:
            return defer.succeed(self.store.append(*args, sender=self.user))
        raise AssertionError(procedure)

    def event(self, envelope) -> None:
        """The router delivers an event on this session."""
        topic = envelope_key(envelope)[0]
        if topic in self.handlers and self.attached:
            self.handlers[topic](dict(envelope))

    def history_calls(self):
        return [kw for p, _, kw in self.calls if p == names.PROC_HISTORY]


class Harness:
    """An engine on a fake clock, delivering into ``got``."""

    def __init__(self, store: Optional[FakeStore] = None, **kwargs) -> None:
        self.clock = task.Clock()
        self.store = store or FakeStore()
        self.got: List[Dict[str, Any]] = []
        self.engine = Engine(self.got.append, self.clock.seconds, self.clock.callLater, **kwargs)

    def join(self, node="n1", user="alice", dept="cardio") -> FakeSession:
        session = FakeSession(self.store, user, dept, node)
        self.engine.on_join(session, session.details)
        return session

    def lose(self, session: FakeSession) -> None:
        session.attached = False
        self.engine.on_disconnect(session, False)

    def send(self, to: str, message: str, via: List[FakeSession] = (), drop_on=()) -> Dict[str, Any]:
        """Store a message and publish it on the sessions ``via`` (except ``drop_on``)."""
        env = self.store.append(to, message)
        for s in via:
            if s not in drop_on:
                s.event(env)
        return env

    def messages(self) -> List[str]:
        return [e["message"] for e in self.got]


def test_a_first_start_begins_now_and_delivers_what_comes_after():
    h = Harness()
    for i in range(3):
        h.store.append("cardio", f"old {i}")
    h.store.append("All", "old all")
    s = h.join()
    ready = h.engine.ready()
    assert ready.called and h.got == []
    assert h.engine.recovery.positions() == {DEPT: 3, ALL: 1, DM: 0}
    assert set(s.handlers) == {DEPT, ALL, DM}
    # subscribed before reading history: one latest page, and one probe for the empty DM topic
    assert s.history_calls()[0] == {"latest": True, "limit": START_PAGE}
    h.send("cardio", "new", via=[s])
    h.send("cardio_alice", "direct", via=[s])
    h.send("cardio_bob", "not mine", via=[s])
    assert h.messages() == ["new", "direct"]


def test_history_n_shows_the_newest_first():
    h = Harness(history=2)
    for i in range(5):
        h.store.append("cardio", f"old {i}")
    s = h.join()
    h.send("cardio", "new", via=[s])
    assert h.messages() == ["old 3", "old 4", "new"]
    assert h.engine.stats.delivered_from_history == 2


def test_a_first_start_cut_short_goes_on_where_it_was_and_shows_nothing_twice():
    h = Harness(history=2)
    for i in range(3):
        h.store.append("cardio", f"old {i}")
    for i in range(START_PAGE + 1):
        h.store.append("All", f"busy {i}")   # the DM topic is not on the first page: it is searched
    s1 = FakeSession(h.store)
    s1.hold[names.PROC_HISTORY] = []
    h.engine.on_join(s1, s1.details)
    s1.hold[names.PROC_HISTORY].pop(0).callback(
        h.store.history(names.client_topics("cardio", "alice"), latest=True, limit=START_PAGE))
    assert h.messages() == ["busy 99", "busy 100"]
    assert "positions" in s1.history_calls()[-1]  # searching where the DM topic stands...
    h.lose(s1)                                    # ...when the connection is lost
    h.join("n2")
    assert h.messages() == ["busy 99", "busy 100"] and not h.engine.recovery.unknown()


def test_out_of_order_via_two_nodes_is_put_in_order_without_history():
    h = Harness()
    s = h.join()
    one = h.store.append("cardio", "one")
    two = h.store.append("cardio", "two")
    s.event(two)          # relayed by another node, arrives first
    h.clock.advance(0.4)
    assert h.got == []
    s.event(one)
    assert h.messages() == ["one", "two"]
    calls = len(s.history_calls())
    h.clock.advance(5)
    assert len(s.history_calls()) == calls and h.engine.stats.gap_fills == 0


def test_a_lost_event_is_read_from_history_once_the_grace_is_over():
    h = Harness()
    s = h.join()
    h.send("cardio", "one", via=[s])
    h.send("cardio", "two", via=[s], drop_on=[s])   # a link dropped it
    h.send("cardio", "three", via=[s])
    assert h.messages() == ["one"]
    h.clock.advance(0.99)
    assert h.messages() == ["one"]
    h.clock.advance(0.02)
    assert h.messages() == ["one", "two", "three"]
    assert s.history_calls()[-2]["positions"] == {DEPT: 1}
    assert h.engine.stats.gap_fills == 1 and h.engine.stats.delivered_from_history == 1
    # the lost event turning up late changes nothing
    s.event(h.store.rows[1])
    assert h.messages() == ["one", "two", "three"] and h.engine.stats.duplicates >= 1


def test_a_reconnect_to_another_node_catches_up_and_drops_the_duplicates():
    h = Harness()
    s1 = h.join("n1")
    h.send("cardio", "a", via=[s1])
    h.lose(s1)
    h.send("cardio", "b")                 # sent while the client was away
    h.send("All", "c")
    s2 = h.join("n2")
    assert h.engine.stats.reconnects == 1
    assert s2.history_calls()[0]["positions"] == {DEPT: 1, ALL: 0, DM: 0}
    assert h.messages() == ["a", "b", "c"]
    # the same events, live as well (e.g. stored before the history read, published after it)
    for env in h.store.rows[1:]:
        s2.event(env)
    h.send("cardio", "d", via=[s2])
    assert h.messages() == ["a", "b", "c", "d"]
    assert h.engine.stats.duplicates == 2


def test_live_events_during_the_catch_up_are_held_in_order():
    h = Harness()
    s1 = h.join("n1")
    h.lose(s1)
    for i in range(3):
        h.store.append("cardio", f"missed {i}")
    session = FakeSession(h.store, node="n2")
    session.hold[names.PROC_HISTORY] = []
    h.engine.on_join(session, session.details)
    [pending] = session.hold[names.PROC_HISTORY]
    live = h.store.append("cardio", "live during catch-up")
    session.event(live)
    assert h.got == []                    # held: 1-3 are not here yet
    del session.hold[names.PROC_HISTORY]
    pending.callback(h.store.history(names.client_topics("cardio", "alice"), positions={DEPT: 0, ALL: 0, DM: 0}))
    assert h.messages() == ["missed 0", "missed 1", "missed 2", "live during catch-up"]


def test_a_join_cut_short_is_not_caught_up():
    h = Harness()
    seen = []
    h.engine.on_connection(lambda up, details: seen.append(up))
    s1 = FakeSession(h.store)
    s1.hold[names.PROC_HISTORY] = []
    h.engine.on_join(s1, s1.details)
    h.lose(s1)
    s1.hold[names.PROC_HISTORY].pop(0).errback(TransportLost())
    assert not h.engine.ready().called and seen == [False]
    h.join("n2")
    assert h.engine.ready().called and seen == [False, True]


def test_an_unknown_topic_start_is_searched_when_the_first_page_does_not_show_it():
    h = Harness()
    for i in range(3):
        h.store.append("cardio_alice", f"old dm {i}")
    for i in range(START_PAGE + 5):
        h.store.append("All", f"busy {i}")
    s = h.join()
    assert h.engine.recovery.positions() == {DEPT: 0, ALL: START_PAGE + 5, DM: 3}
    h.send("cardio_alice", "new dm", via=[s])
    assert h.messages() == ["new dm"]


def test_history_unavailable_is_retried():
    h = Harness()
    s1 = h.join()
    h.lose(s1)
    h.store.append("cardio", "missed")
    s2 = FakeSession(h.store, node="n2")
    s2.refuse[names.PROC_HISTORY] = [ApplicationError(errors.Unavailable.URI, "starting")]
    h.engine.on_join(s2, s2.details)
    assert h.got == []
    h.clock.advance(2)
    assert h.messages() == ["missed"]


def test_the_saved_position_is_resumed_and_kept(tmp_path):
    store = FakeStore()
    path = tmp_path / "alice.state"
    first = FileState(path)
    h1 = Harness(store, state=first)
    s = h1.join()
    h1.send("cardio", "one", via=[s])
    h1.send("cardio", "two", via=[s])
    h1.engine.commit(h1.got[0])          # the application finished with "one" only
    assert FileState(tmp_path / "other").load() is None
    assert path.read_text().count('"deptcast.dept.cardio": 1') == 1
    first.unlock()
    # the process is gone; a new one resumes: "two" again (never handled), and what came since
    store.append("cardio", "three")
    h2 = Harness(store, state=FileState(path))
    s2 = h2.join()
    assert {"latest": True, "limit": START_PAGE} not in s2.history_calls()
    assert h2.messages() == ["two", "three"]
    # saved by renaming a whole file over the old one: no temporary file is left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alice.state", "alice.state.lock", "other.lock"]


def test_a_state_file_of_another_user_stops_the_client(tmp_path):
    path = tmp_path / "s"
    FileState(path).save("cardio_bob", {DEPT: 3})
    h = Harness(state=FileState(path))
    h.join()
    assert isinstance(h.engine.fatal, StateError) and "cardio_bob" in str(h.engine.fatal)
    failure = h.engine.ready()
    assert isinstance(failure.result.value, StateError)
    failure.addErrback(lambda f: None)


def test_a_position_that_cannot_be_saved_stops_the_client(tmp_path):
    import shutil
    folder = tmp_path / "gone"
    folder.mkdir()
    h = Harness(state=FileState(folder / "s"))
    s = h.join()
    h.send("cardio", "one", via=[s])
    shutil.rmtree(folder)
    with pytest.raises(StateError, match="cannot write it"):
        h.engine.commit(h.got[0])
    assert isinstance(h.engine.fatal, StateError)


def test_a_state_file_in_use_is_refused(tmp_path):
    first = FileState(tmp_path / "s")
    first.lock()
    with pytest.raises(StateError, match="in use"):
        FileState(tmp_path / "s").load()
    first.unlock()
    assert FileState(tmp_path / "s").load() is None
    with pytest.raises(StateError, match="does not exist"):
        FileState(tmp_path / "missing" / "s").load()


def test_a_damaged_state_file_names_the_reason(tmp_path):
    (tmp_path / "s").write_text("{not json")
    with pytest.raises(StateError, match="not JSON"):
        FileState(tmp_path / "s").load()


def test_one_client_is_one_user():
    h = Harness()
    h.join(user="alice")
    h.join(user="bob")
    assert isinstance(h.engine.fatal, StateError)


# -- sending


def test_send_returns_the_envelope():
    h = Harness(listen=False)
    s = h.join()
    d = defer.ensureDeferred(h.engine.send("cardio", "hi"))
    assert d.result["message"] == "hi" and s.handlers == {}


@pytest.mark.parametrize("uri, cls", [
    ("deptcast.error.invalid_frame", errors.InvalidFrame), ("deptcast.error.not_authorized", errors.NotAuthorized),
    ("deptcast.error.too_large", errors.TooLarge), ("deptcast.error.rate_limited", errors.RateLimited),
    ("wamp.error.not_authorized", errors.NotAuthorized), ("deptcast.error.something_new", errors.DeptcastError),
])
def test_each_refusal_raises_its_class_at_once(uri, cls):
    h = Harness(listen=False)
    s = h.join()
    s.refuse[names.PROC_SEND] = [ApplicationError(uri, "because")]
    d = defer.ensureDeferred(h.engine.send("cardio", "hi"))
    error = d.result.value
    assert type(error) is cls and error.uri == uri and error.reason == "because"
    assert str(error) == f"{uri}: because"
    assert len([c for c in s.calls if c[0] == names.PROC_SEND]) == 1
    d.addErrback(lambda f: None)


def test_unavailable_is_retried_with_growing_delays():
    h = Harness(listen=False)
    s = h.join()
    s.refuse[names.PROC_SEND] = [ApplicationError(errors.Unavailable.URI, "starting")] * 3
    d = defer.ensureDeferred(h.engine.send("cardio", "hi"))
    assert not d.called
    h.clock.advance(0.5)
    h.clock.advance(1.0)
    h.clock.advance(2.0)
    assert d.result["message"] == "hi"
    assert len([c for c in s.calls if c[0] == names.PROC_SEND]) == 4


def test_unavailable_past_the_timeout_is_raised():
    h = Harness(listen=False)
    s = h.join()
    s.refuse[names.PROC_SEND] = [ApplicationError(errors.Unavailable.URI, "starting")] * 100
    d = defer.ensureDeferred(h.engine.send("cardio", "hi", timeout=3))
    h.clock.pump([0.5] * 20)
    assert isinstance(d.result.value, errors.Unavailable)
    d.addErrback(lambda f: None)


def test_a_send_waits_for_a_session_and_a_lost_one_is_not_retried():
    h = Harness(listen=False)
    d = defer.ensureDeferred(h.engine.send("cardio", "waits"))
    assert not d.called
    s = h.join()
    assert d.result["message"] == "waits"
    s.hold[names.PROC_SEND] = []
    d2 = defer.ensureDeferred(h.engine.send("cardio", "in flight"))
    s.hold[names.PROC_SEND][0].errback(TransportLost())
    assert isinstance(d2.result.value, errors.ConnectionLost)
    d2.addErrback(lambda f: None)
    h.lose(s)
    d3 = defer.ensureDeferred(h.engine.send("cardio", "nobody there", timeout=2))
    h.clock.advance(2.1)
    assert isinstance(d3.result.value, errors.Unavailable)
    d3.addErrback(lambda f: None)


# -- the token, on the Component


class FakeComponent:
    """Records what the Connector gives Autobahn's Component."""

    instances: List["FakeComponent"] = []

    def __init__(self, transports, realm, authentication, is_fatal):
        self.transports, self.realm, self.authentication, self.is_fatal = transports, realm, authentication, is_fatal
        self.handlers: Dict[str, Any] = {}
        self.starts = 0
        self.done = defer.Deferred()
        self._session = None
        self._delay_f = None
        FakeComponent.instances.append(self)

    def on(self, event, handler):
        self.handlers[event] = handler

    def start(self, loop=None):
        self.starts += 1
        self.done = defer.Deferred()
        return self.done

    def stop(self):
        if not self.done.called:
            self.done.callback(None)
        return defer.succeed(None)


class Refusal:
    def __init__(self, reason):
        self.reason, self.message = reason, "the token has expired"


def _connector(h: Harness, token, urls=("ws://a/ws", "ws://b/ws")) -> Connector:
    return Connector(FakeComponent, list(urls), token, h.engine, h.clock.callLater)


def test_the_component_gets_every_url_with_jittered_back_off_and_the_ticket():
    h = Harness()
    c = _connector(h, "tok")
    comp = c.component
    assert [t["url"] for t in comp.transports] == ["ws://a/ws", "ws://b/ws"]
    assert all(t["retry_delay_jitter"] > 0 and t["max_retries"] == -1 for t in comp.transports)
    assert comp.realm == names.REALM
    assert comp.authentication["ticket"].on_challenge(None, None) == "tok"


def test_a_provider_is_asked_for_a_token_on_every_connect():
    tokens = iter(["first", "second"])
    h = Harness()
    c = _connector(h, lambda: next(tokens))
    auth: TicketAuthenticator = c.component.authentication["ticket"]
    assert auth.on_challenge(None, None) == "first"
    assert auth.on_challenge(None, None) == "second"
    assert auth._args == {}  # no authid: the node takes the user from the token
    deferred_token = TicketAuthenticator(lambda: defer.succeed("later"))
    assert deferred_token.on_challenge(None, None).result == "later"


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


class _Transport:
    """Autobahn's transport as far as the back-off goes: ``reset`` puts its attempts to 0."""

    def __init__(self) -> None:
        self.connect_attempts = 3

    def reset(self) -> None:
        self.connect_attempts = 0


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
    comp._transports = [_Transport(), _Transport()]
    s = FakeSession(h.store)
    comp.handlers["join"](s, s.details)
    comp.handlers["leave"](s, _Leave("wamp.close.transport_lost"))
    assert [t.connect_attempts for t in comp._transports] == [3, 3]   # a failure keeps its back-off
    comp.handlers["leave"](s, _Leave(names.CLOSE_GOING_AWAY))
    assert [t.connect_attempts for t in comp._transports] == [0, 0]


# -- retention (deptcast.error.pruned) and the history rate limit


@pytest.fixture
def log_lines():
    """What is logged (every logger of the process) during the test, formatted."""
    from twisted.logger import formatEvent, globalLogPublisher
    lines: List[str] = []

    def observe(event) -> None:
        lines.append(formatEvent(event))
    globalLogPublisher.addObserver(observe)
    yield lines
    globalLogPublisher.removeObserver(observe)


def test_a_saved_position_older_than_retention_goes_on_from_the_newest_page(tmp_path, log_lines):
    store = FakeStore()
    path = tmp_path / "alice.state"
    first = FileState(path)
    h1 = Harness(store, state=first)
    s = h1.join()
    h1.send("cardio", "seen", via=[s])
    h1.engine.commit(h1.got[0])
    h1.lose(s)
    first.unlock()
    for i in range(10):
        store.append("cardio", f"while away {i}")
    store.prune(DEPT, 3)                                  # retention keeps the newest 3
    h2 = Harness(store, state=FileState(path))
    s2 = h2.join()
    assert h2.messages() == ["while away 7", "while away 8", "while away 9"]
    assert h2.engine.ready().called and h2.engine.fatal is None
    assert [list(c) for c in s2.history_calls()] == [["positions", "limit"], ["latest", "limit"],
                                                      ["positions", "limit"]]
    assert h2.engine.stats.pruned == 1 and h2.engine.stats.reconnects == 0
    [line] = [ln for ln in log_lines if "retention" in ln]
    assert line.startswith("deptcast client: messages after this client's position were removed by the node's "
                           "retention (removed by retention on deptcast.dept.cardio)")
    # it goes on: the next message is delivered once, and the position is saved
    h2.send("cardio", "after", via=[s2])
    assert h2.messages()[-1] == "after" and len(h2.got) == 4


def test_a_topic_the_newest_page_misses_is_read_from_the_first_message_kept():
    """A first start in the browser's way (the newest page, quiet topics from their start):
    the DM topic, older than that page, lost its first messages to retention."""
    store = FakeStore()
    for i in range(6):
        store.append("cardio_alice", f"dm {i}")
    store.prune(DM, 4)
    for i in range(START_PAGE + 5):
        store.append("cardio", f"busy {i}")
    h = Harness(store, first_start="page")
    s = h.join()
    assert h.messages()[-4:] == ["dm 2", "dm 3", "dm 4", "dm 5"]
    assert h.messages()[0] == "busy 5" and len(h.got) == START_PAGE + 4
    assert h.engine.recovery.positions() == {DEPT: START_PAGE + 5, ALL: 0, DM: 6}
    probes = [c["positions"] for c in s.history_calls() if c.get("limit") == 1]
    assert probes == [{ALL: 0}, {DM: 0}, {DM: 1}, {DM: 3}, {DM: 2}]
    assert h.engine.stats.pruned == 1 and h.engine.stats.skipped == 2


def test_a_first_start_now_searches_past_what_retention_removed():
    """The default first start: a topic the newest page does not show is searched for where it
    stands; probes below what retention removed are refused, and the search moves past them."""
    store = FakeStore()
    for i in range(40):
        store.append("cardio_alice", f"dm {i}")
    store.prune(DM, 5)
    for i in range(START_PAGE + 5):
        store.append("All", f"busy {i}")
    h = Harness(store)
    s = h.join()
    assert h.engine.fatal is None and h.engine.ready().called
    assert h.engine.recovery.positions() == {DEPT: 0, ALL: START_PAGE + 5, DM: 40}
    h.send("cardio_alice", "new dm", via=[s])
    assert h.messages() == ["new dm"]
    assert h.engine.stats.pruned == 0, "nothing the client wanted was removed"


def test_retention_during_a_gap_goes_on_from_the_newest_page_for_that_topic():
    h = Harness()
    s = h.join()
    h.send("cardio", "one", via=[s])
    for i in range(6):
        h.send("cardio", f"lost {i}", via=[s], drop_on=[s])   # a link dropped them...
    h.send("cardio", "later", via=[s])                          # (the gap shows)
    h.store.prune(DEPT, 3)                                      # ...and retention removed most
    h.send("All", "to all", via=[s])
    assert h.messages() == ["one", "to all"]
    h.clock.advance(1.5)
    assert h.messages() == ["one", "to all", "lost 4", "lost 5", "later"]
    assert s.history_calls()[-3:] == [{"positions": {DEPT: 1}, "limit": HISTORY_PAGE},
                                      {"latest": True, "limit": HISTORY_PAGE},
                                      {"positions": {DEPT: 8}, "limit": HISTORY_PAGE}]
    assert h.engine.stats.pruned == 1 and h.engine.recovery.gaps() == {} and h.engine.stats.duplicates == 1


def test_a_node_that_refuses_every_position_as_pruned_stops_the_client():
    h = Harness()
    s1 = h.join()
    h.lose(s1)
    h.store.append("cardio", "m")
    s2 = FakeSession(h.store, node="n2")
    s2.refuse[names.PROC_HISTORY] = [ApplicationError(errors.Pruned.URI, "everything is gone")] * 1000
    h.engine.on_join(s2, s2.details)
    assert isinstance(h.engine.fatal, errors.Pruned)
    assert len(s2.history_calls()) < 1000


def test_rate_limited_history_waits_retry_after_and_goes_on_without_reconnecting():
    h = Harness()
    s1 = h.join()
    h.lose(s1)
    for i in range(3):
        h.store.append("cardio", f"missed {i}")
    s2 = FakeSession(h.store, node="n2")
    s2.refuse[names.PROC_HISTORY] = [ApplicationError(errors.RateLimited.URI, "slow down", retry_after=2.5)]
    h.engine.on_join(s2, s2.details)
    assert h.got == [] and len(s2.history_calls()) == 1
    h.clock.advance(2.4)
    assert len(s2.history_calls()) == 1, "not before retry_after"
    h.clock.advance(0.1)
    assert h.messages() == ["missed 0", "missed 1", "missed 2"]
    assert s2.history_calls()[0] == s2.history_calls()[1], "the same request again"
    # without retry_after: 1 s
    h.lose(s2)
    h.store.append("cardio", "missed 3")
    s3 = FakeSession(h.store, node="n3")
    s3.refuse[names.PROC_HISTORY] = [ApplicationError(errors.RateLimited.URI, "slow down")] * 2
    h.engine.on_join(s3, s3.details)
    h.clock.advance(0.99)
    assert len(s3.history_calls()) == 1
    h.clock.advance(0.01)
    assert len(s3.history_calls()) == 2
    h.clock.advance(1)
    assert h.messages()[-1] == "missed 3" and h.engine.ready().called
    assert h.engine.stats.rate_limited == 3 and h.engine.fatal is None


def test_pages_are_read_until_an_empty_answer_not_until_a_short_one():
    """The node bounds pages by bytes too: a page shorter than the limit asked is not the end."""
    class ShortPages(FakeStore):
        def history(self, topics, **kwargs):
            rows = super().history(topics, **kwargs)
            return rows[:2] if "positions" in kwargs else rows
    store = ShortPages()
    h = Harness(store)
    s1 = h.join()
    h.lose(s1)
    for i in range(5):
        store.append("cardio", f"missed {i}")
    s2 = h.join("n2")
    assert h.messages() == [f"missed {i}" for i in range(5)]
    assert [c["positions"][DEPT] for c in s2.history_calls()] == [0, 2, 4, 5]   # 2 + 2 + 1, then empty
