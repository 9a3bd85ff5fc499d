"""What a link pulls (``mesh.own_topics`` of :mod:`components.upstream.mesh`): a link's local
leg forwards a subscription of its node while it has a subscriber of the node's own, and never
one that only the peers' link sessions hold. Upstream's real ``_setup_event_forwarding`` runs
on a real ``RLinkLocalSession`` over Crossbar's real subscription map; the transport and the
remote leg are fakes that record (no network)."""

from types import SimpleNamespace
from typing import Any, List

import pytest
from autobahn.wamp import message
from autobahn.wamp.request import Subscription
from autobahn.wamp.types import ComponentConfig
from crossbar.router.broker import SubscriptionExtra
from crossbar.router.observation import UriObservationMap
from crossbar.worker.rlink import RLinkLocalSession
from twisted.internet import defer

from components import upstream
from components.core.names import MEMBER, RLINK_ROLE
from components.upstream.mesh import ON_SUBSCRIBE, ON_UNSUBSCRIBE, has_own_subscriber, own_topics

TOPIC = "deptcast.dept.hr"


class Sess:
    """A router session as the broker keeps it (hashable, with a role)."""

    def __init__(self, sid: int, role: str) -> None:
        self._session_id = sid
        self._authrole = role


class Transport:
    """The local leg's in-process transport: records what the leg sends, holds the router."""

    def __init__(self, router: Any) -> None:
        self._router = router
        self.sent: List[Any] = []

    def send(self, msg: Any) -> None:
        self.sent.append(msg)

    def isOpen(self) -> bool:
        return True


class Remote:
    """The remote leg: records the subscribes the local leg makes on the peer."""

    def __init__(self) -> None:
        self.subscribes: List[str] = []
        self.pending: List[defer.Deferred] = []
        self.unsubscribed: List[str] = []
        self.observers: dict = {}

    def on(self, event: str, handler: Any) -> None:
        self.observers.setdefault(event, []).append(handler)

    def subscribe(self, handler: Any, topic: str, options: Any = None) -> defer.Deferred:
        self.subscribes.append(topic)
        d: defer.Deferred = defer.Deferred()
        self.pending.append(d)
        return d

    def answer(self) -> None:
        """The peer answers every subscribe made so far."""
        pending, self.pending = self.pending, []
        for d, topic in zip(pending, self.subscribes[-len(pending):]):
            d.callback(SimpleNamespace(topic=topic, unsubscribe=lambda t=topic: self._unsubscribe(t)))

    def _unsubscribe(self, topic: str) -> defer.Deferred:
        self.unsubscribed.append(topic)
        return defer.succeed(None)


class Node:
    """One router's subscription map with the local leg of a link to a peer on it."""

    def __init__(self) -> None:
        self.map = UriObservationMap()
        router = SimpleNamespace(_broker=SimpleNamespace(_subscription_map=self.map))
        self.remote = Remote()
        self.leg = RLinkLocalSession(ComponentConfig("deptcast", {"other": self.remote, "rlink": "to-n2"}))
        self.leg._transport = Transport(router)
        self.leg._session_id = 1
        self.handlers: dict = {}
        self.setup = self.leg._setup_event_forwarding(self.remote)
        self.answer_local()
        self.sessions: dict = {}

    def answer_local(self) -> None:
        """This router answers the local leg's meta subscribes (each one is made once the one
        before is answered)."""
        answered = True
        while answered:
            answered = False
            for msg in list(self.leg._transport.sent):
                if isinstance(msg, message.Subscribe) and msg.request in self.leg._subscribe_reqs:
                    request = self.leg._subscribe_reqs.pop(msg.request)
                    self.handlers[msg.topic] = request.handler.fn
                    request.on_reply.callback(Subscription(1000 + msg.request, msg.topic, self.leg, request.handler))
                    answered = True

    def session(self, sid: int, role: str) -> Any:
        return self.sessions.setdefault(sid, Sess(sid, role))

    def subscribe(self, sid: int, role: str, topic: str = TOPIC) -> Any:
        """A session subscribes; the meta events follow (on_create for the first, on_subscribe)."""
        sub, _, first = self.map.add_observer(self.session(sid, role), topic, "exact", extra=SubscriptionExtra())
        if first:
            self.meta("wamp.subscription.on_create", sid,
                      {"id": sub.id, "created": sub.created, "uri": sub.uri, "match": "exact"})
        self.meta(ON_SUBSCRIBE, sid, sub.id)
        return sub

    def unsubscribe(self, sid: int, topic: str = TOPIC) -> None:
        sub = self.map.get_observation(topic, "exact")
        _, last = self.map.drop_observer(self.sessions[sid], sub)
        if last:
            self.map.delete_observation(sub)
        self.meta(ON_UNSUBSCRIBE, sid, sub.id)
        if last:
            self.meta("wamp.subscription.on_delete", sid, sub.id)

    def meta(self, topic: str, *args: Any) -> None:
        """The router's meta event, to the handler the leg subscribed to it (if any)."""
        handler = self.handlers.get(topic)
        if handler is not None:
            handler(*args, details=None)


@pytest.fixture
def patched():
    upstream.install(upstream.Wiring(peers=("n2", "n3")), only=["mesh.own_topics"])
    yield
    upstream.uninstall(["mesh.own_topics"])


def test_the_local_leg_also_follows_each_subscriber(patched):
    node = Node()
    assert node.setup.called
    topics = [m.topic for m in node.leg._transport.sent if isinstance(m, message.Subscribe)]
    assert topics == ["wamp.subscription.on_create", "wamp.subscription.on_delete", ON_SUBSCRIBE, ON_UNSUBSCRIBE]


def test_a_subscription_only_a_peers_link_holds_is_not_pulled(patched):
    node = Node()
    node.subscribe(301, RLINK_ROLE)
    assert node.remote.subscribes == []
    assert node.leg._subs == {}
    assert own_topics(node.leg).ignored == 2


def test_upstream_pulls_what_a_peers_link_subscribed():
    node = Node()
    node.subscribe(301, RLINK_ROLE)
    assert node.remote.subscribes == [TOPIC]


def test_the_first_own_subscriber_pulls_it_and_the_last_one_drops_it(patched):
    node = Node()
    node.subscribe(301, RLINK_ROLE)
    node.subscribe(501, MEMBER)       # on_subscribe of an own session: now it is pulled
    assert node.remote.subscribes == [TOPIC]
    node.remote.answer()
    node.subscribe(502, MEMBER)       # a second one changes nothing
    assert node.remote.subscribes == [TOPIC]
    node.unsubscribe(501)
    assert node.remote.unsubscribed == []
    node.unsubscribe(502)             # the link still holds it here: the peer's subscription goes anyway
    assert node.remote.unsubscribed == [TOPIC]
    assert node.leg._subs == {}
    assert node.map.get_observation(TOPIC, "exact") is not None
    node.subscribe(503, MEMBER)       # and comes back with the next own subscriber
    assert node.remote.subscribes == [TOPIC, TOPIC]


def test_made_and_dropped_at_once_is_dropped_on_the_peer_when_the_subscribe_returns(patched):
    node = Node()
    node.subscribe(501, MEMBER)
    node.unsubscribe(501)             # before the peer answered
    assert node.leg._subs == {}
    node.remote.answer()              # upstream: "subscription already gone", unsubscribed at once
    assert node.remote.unsubscribed == [TOPIC]


def test_meta_events_handled_late_follow_the_broker_now(patched):
    node = Node()
    sub, _, _ = node.map.add_observer(node.session(501, MEMBER), TOPIC, "exact", extra=SubscriptionExtra())
    node.map.drop_observer(node.sessions[501], sub)
    node.map.delete_observation(sub)
    # the on_create of a subscription already gone again pulls nothing
    node.meta("wamp.subscription.on_create", 501, {"id": sub.id, "uri": TOPIC})
    assert node.remote.subscribes == []


def test_the_subscriptions_listed_on_join_are_filtered(patched):
    node = Node()
    linked = node.subscribe(301, RLINK_ROLE)
    own = node.subscribe(501, MEMBER, "deptcast.dept.it")
    answer = node.leg.call("wamp.subscription.list")
    call = [m for m in node.leg._transport.sent if isinstance(m, message.Call)][-1]
    node.leg._call_reqs.pop(call.request).on_reply.callback(
        {"exact": [linked.id, own.id], "prefix": [], "wildcard": []})
    assert answer.result["exact"] == [own.id]


def test_the_sweep_drops_what_lost_its_own_subscribers(patched):
    node = Node()
    sub = node.subscribe(501, MEMBER)
    node.remote.answer()
    node.map.add_observer(node.session(301, RLINK_ROLE), TOPIC, "exact", extra=SubscriptionExtra())
    node.map.drop_observer(node.sessions[501], sub)  # its meta event not handled yet
    for handler in node.remote.observers.get("ready", []):
        handler(node.remote)
    assert node.remote.unsubscribed == [TOPIC]


def test_has_own_subscriber():
    own, link = Sess(501, MEMBER), Sess(301, RLINK_ROLE)
    assert has_own_subscriber(None) is False
    assert has_own_subscriber(SimpleNamespace(uri=TOPIC, observers={link})) is False
    assert has_own_subscriber(SimpleNamespace(uri=TOPIC, observers={link, own})) is True
    assert has_own_subscriber(SimpleNamespace(uri="wamp.session.on_join", observers={own})) is False


def test_a_subscription_whose_delete_is_under_way_is_not_deleted_again():
    """on_unsubscribe of the last own subscriber starts upstream's delete; the on_delete that
    follows while its UNSUBSCRIBE is unanswered must not delete again (upstream raises
    "subscription no longer active" from its handler: a traceback in the node's log)."""
    deletes: List[Any] = []
    leg = SimpleNamespace(_subs={7: {"uri": TOPIC, "sub": SimpleNamespace(active=False)},
                                 8: {"uri": TOPIC, "sub": SimpleNamespace(active=True)}})
    topics = own_topics(leg)
    topics.delete = lambda session_id, sub_id: deletes.append(sub_id)
    topics.reconcile(None, 7)   # the subscription is gone from the broker; delete under way
    topics.reconcile(None, 8)   # gone from the broker, still forwarded: deleted
    assert deletes == [8]


def test_with_meta_local_the_leg_hears_the_subscription_events_in_process_and_the_broker_none():
    """``sessions.meta_local``: a link's local leg, on a real router with its service session,
    follows the subscription meta events in-process; a client's SUBSCRIBE makes it pull the
    topic without a single PUBLISH through the broker."""
    from autobahn.twisted.wamp import ApplicationSession
    from crossbar.router.session import RouterApplicationSession
    from twisted.internet.task import Clock

    from tests.unit.upstream.test_sessions_meta import BACKEND, realm_with_service_session

    router, _ = realm_with_service_session()
    clock = Clock()
    router._broker._reactor = clock  # the meta events come after callLater(0)
    published: List[str] = []
    upstream_publish = router._broker.processPublish
    router._broker.processPublish = lambda session, publish: (published.append(publish.topic),
                                                              upstream_publish(session, publish))[1]
    upstream.install(upstream.Wiring(router=router, peers=("n2",)),
                     only=["sessions.meta_heard", "sessions.meta_local", "mesh.own_topics"])
    try:
        remote = Remote()
        leg = RLinkLocalSession(ComponentConfig("deptcast", {"other": remote, "rlink": "to-n2"}))
        leg._transport = Transport(router)  # in-process on the real router (what follow reads)
        leg._session_id, leg._authid, leg._authrole = 1, "to-n2", RLINK_ROLE
        setup = leg._setup_event_forwarding(remote)
        assert setup.called
        assert [m for m in leg._transport.sent if isinstance(m, message.Subscribe)] == []
        client = ApplicationSession(ComponentConfig("deptcast"))
        RouterApplicationSession(client, router, authid="u1", authrole=BACKEND)
        client.subscribe(lambda *args: None, TOPIC)
        clock.advance(0)
        assert remote.subscribes == [TOPIC]
        assert published == []
    finally:
        upstream.uninstall()
