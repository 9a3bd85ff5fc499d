"""The link repair of :mod:`components.upstream.rlinks` on real Crossbar rlink session objects
(``RLinkRemoteSession``) driven with WAMP messages over a fake transport: no router, no
network. The first test shows the duplication itself (autobahn keeps a reused session's
handlers across connections); the others, that the repair removes it."""

from types import SimpleNamespace
from typing import Any, List

import pytest
from autobahn.wamp import message, role
from autobahn.wamp.types import ComponentConfig, SubscribeOptions, TransportDetails
from crossbar.worker.rlink import RLinkLocalSession, RLinkRemoteSession
from twisted.internet import defer

from components import upstream
from components.service.links import LinkState
from components.upstream import rlinks
from components.upstream.rlinks import forget_previous_connection, keep_newest_handler, link_id_of, peer_of


class FakeTransport:
    """What an autobahn session needs of its transport; records what the session sends."""

    def __init__(self) -> None:
        self.sent: List[Any] = []
        self.open = True
        self._serializer = SimpleNamespace(SERIALIZER_ID="json")
        self.transport_details = TransportDetails(channel_id={})

    def send(self, msg) -> None:
        self.sent.append(msg)

    def isOpen(self) -> bool:
        return self.open

    def is_closed(self) -> bool:
        return not self.open

    def close(self) -> None:
        self.open = False

    def abort(self) -> None:
        self.open = False


def make_link(link_id: str = "to-n1") -> RLinkRemoteSession:
    """A link's remote leg as Crossbar makes it, with its local leg beside it."""
    controller = SimpleNamespace(get_public_key=lambda: defer.succeed("ab" * 32))
    manager = SimpleNamespace(controller=controller, _controller=controller)
    local = RLinkLocalSession(ComponentConfig("deptcast", extra={"rlink": link_id, "on_ready": defer.Deferred()}))
    local._tracker = SimpleNamespace(connected=False)
    return RLinkRemoteSession(ComponentConfig("deptcast", extra={
        "rlink_manager": manager, "other": local, "on_ready": defer.Deferred(), "authid": "n2"}))


class Peer:
    """Plays the peer router for one remote leg: connections, subscriptions, events."""

    def __init__(self, session) -> None:
        self.session = session
        self.transport = None
        self.next_session = 1000

    def connect(self) -> None:
        self.transport = FakeTransport()
        self.session.onOpen(self.transport)
        self.next_session += 1
        self.session.onMessage(message.Welcome(self.next_session, {"broker": role.RoleBrokerFeatures()},
                                               authid="n2", authrole="deptcast-rlink"))

    def drop(self) -> None:
        """The TCP connection is aborted (``ss -K``)."""
        self.transport.open = False
        self.session.onClose(False)

    def subscribe(self, topic: str, subscription_id: int, handler=None):
        calls: List[Any] = []
        d = self.session.subscribe(handler or (lambda *a, **kw: calls.append(a)), topic,
                                   options=SubscribeOptions(details=True))
        request = self.transport.sent[-1]  # the SUBSCRIBE just sent
        assert isinstance(request, message.Subscribe) and request.topic == topic
        self.session.onMessage(message.Subscribed(request.request, subscription_id))
        return d, calls

    def event(self, subscription_id: int, *args) -> None:
        self.session.onMessage(message.Event(subscription_id, 1, args=list(args)))


def install(state: LinkState, peers=("n1", "n3")):
    [status] = upstream.install(upstream.Wiring(links=state, peers=peers), only=[rlinks.REPAIR.name])
    return status


@pytest.fixture
def hooks():
    """Install the repair on Crossbar's class for one test (the conftest takes it out again)."""
    assert install(LinkState()).applied
    yield rlinks.watch()


def test_uninstall_puts_crossbars_methods_back(hooks):
    crossbars = upstream.registry.original("crossbar.worker.rlink.RLinkRemoteSession.onConnect")
    assert RLinkRemoteSession.__dict__["onConnect"] is not crossbars and "subscribe" in RLinkRemoteSession.__dict__
    upstream.uninstall([rlinks.REPAIR.name])
    assert RLinkRemoteSession.__dict__["onConnect"] is crossbars and "subscribe" not in RLinkRemoteSession.__dict__
    assert rlinks.watch() is None and not hooks.state.watching


def test_without_the_repair_a_reconnected_link_delivers_each_event_twice():
    """The bug, in autobahn and Crossbar as installed: the peer keeps the subscription (its id
    survives), the reused session keeps the old handler, the new one is appended."""
    peer = Peer(make_link())
    peer.connect()
    _, first = peer.subscribe("deptcast.dept.hr", 77)
    peer.drop()
    peer.connect()
    _, second = peer.subscribe("deptcast.dept.hr", 77)
    peer.event(77, {"id": "1"})
    assert len(first) + len(second) == 2
    assert len(peer.session._subscriptions[77]) == 2


def test_the_repair_forgets_the_previous_connections_handlers(hooks):
    peer = Peer(make_link())
    peer.connect()
    _, first = peer.subscribe("deptcast.dept.hr", 77)
    _, other = peer.subscribe("deptcast.all", 78)
    peer.event(77, {"id": "1"})
    assert len(first) == 1
    peer.drop()
    peer.connect()
    assert peer.session._subscriptions == {}
    _, second = peer.subscribe("deptcast.dept.hr", 77)
    peer.event(77, {"id": "2"})
    assert (len(first), len(second)) == (1, 1)
    assert hooks.repairs["n1"] == {"forgotten": 2, "dropped": 0, "connections": 2}


def test_a_topic_subscribed_twice_on_one_connection_keeps_one_handler(hooks):
    """Two overlapping re-subscribe runs of Crossbar's link subscribe the same topic twice."""
    peer = Peer(make_link("to-n3"))
    peer.connect()
    d1, first = peer.subscribe("deptcast.dept.hr", 77)
    d2, second = peer.subscribe("deptcast.dept.hr", 77)
    peer.event(77, {"id": "1"})
    assert (len(first), len(second)) == (0, 1)
    assert not d1.result.active and d2.result.active
    assert hooks.repairs["n3"]["dropped"] == 1


def test_the_link_state_follows_the_connection(hooks):
    seen = []
    hooks.state.on_up(lambda p: seen.append(("up", p)))
    hooks.state.on_down(lambda p: seen.append(("down", p)))
    peer = Peer(make_link())
    assert hooks.state.is_up("n1") is None and hooks.state.watching
    peer.connect()
    assert hooks.state.is_up("n1") is True
    peer.drop()
    assert hooks.state.is_up("n1") is False
    peer.connect()
    assert seen == [("up", "n1"), ("down", "n1"), ("up", "n1")]


def test_a_link_lost_during_its_resubscribe_is_not_reported_up(hooks):
    """Crossbar's link fires 'ready' after its re-subscribe even when the connection was lost
    in the middle of it (the subscribes fail and are caught)."""
    peer = Peer(make_link())
    peer.connect()
    peer.drop()
    peer.session.fire("ready", peer.session)   # the late 'ready' of the lost connection
    assert hooks.state.is_up("n1") is False


def test_links_to_unknown_peers_are_repaired_but_not_reported(hooks):
    peer = Peer(make_link("rlink001"))
    peer.connect()
    peer.subscribe("deptcast.dept.hr", 77)
    peer.drop()
    peer.connect()
    assert peer.session._subscriptions == {}
    assert hooks.repairs == {} and hooks.state.is_up("rlink001") is None


def test_installing_again_leaves_the_repair_as_it_is(hooks):
    wrapped = RLinkRemoteSession.__dict__["onConnect"]
    assert install(LinkState()).applied
    assert RLinkRemoteSession.__dict__["onConnect"] is wrapped and rlinks.watch() is hooks
    peer = Peer(make_link())
    peer.connect()
    assert hooks.state.is_up("n1") is True


def test_plain_helpers():
    assert peer_of("to-n1", ["n1", "n2"]) == "n1"
    assert peer_of("to-n9", ["n1"]) is None and peer_of("rlink000", ["n1"]) is None and peer_of(None, ["n1"]) is None
    assert link_id_of(object()) is None and link_id_of(make_link("to-n2")) == "to-n2"
    bare = SimpleNamespace()
    assert forget_previous_connection(bare) == 0
    handler = SimpleNamespace(id=5, active=True)
    session = SimpleNamespace(_subscriptions={5: [handler]}, _registrations={9: SimpleNamespace(active=True)})
    assert keep_newest_handler(session, handler) == 0
    assert forget_previous_connection(session) == 1
    assert not handler.active and session._subscriptions == {} and session._registrations == {}
