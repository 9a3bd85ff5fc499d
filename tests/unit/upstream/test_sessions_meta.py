"""Meta events published only where someone listens (``sessions.meta_heard``), on a real
Crossbar router with its real service session: an event nobody subscribes never reaches the
broker; one that a session subscribes reaches it as before."""

from typing import Any, List

from autobahn.twisted.wamp import ApplicationSession
from autobahn.wamp.types import ComponentConfig, PublishOptions, SubscribeOptions
from crossbar.router.router import RouterFactory
from crossbar.router.service import RouterServiceAgent
from crossbar.router.session import RouterApplicationSession
from crossbar.worker.types import RouterRealm
from twisted.trial.unittest import SynchronousTestCase

from components import upstream
from components.core import names
from components.upstream import sessions

BACKEND = "deptcast-backend"


def realm_with_service_session() -> Any:
    """A realm as a router worker starts it: its router and its service session (the meta API)."""
    factory = RouterFactory("node1", "worker1", None)
    realm = RouterRealm(None, None, {"name": names.REALM})
    factory.start_realm(realm)
    factory.add_role(names.REALM, {"name": BACKEND, "permissions": [
        {"uri": "", "match": "prefix", "allow": {"call": True, "register": True, "publish": True, "subscribe": True},
         "disclose": {"caller": True, "publisher": True}, "cache": True}]})
    router = factory.get(names.REALM)
    realm.session = RouterServiceAgent(ComponentConfig(names.REALM, {}), router)
    RouterApplicationSession(realm.session, router, authid="service", authrole="trusted")
    return router, realm.session


def topics_published(router: Any) -> List[str]:
    """The topics ``router``'s broker is asked to publish from now on, in order (a list it appends
    to)."""
    published: List[str] = []
    broker = router._broker
    upstream_publish = broker.processPublish

    def counted(session: Any, publish: Any) -> Any:
        published.append(publish.topic)
        return upstream_publish(session, publish)
    broker.processPublish = counted
    return published


class MetaHeardTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.router, self.agent = realm_with_service_session()
        self.published = topics_published(self.router)
        [state] = upstream.install(upstream.Wiring(router=self.router), only=[sessions.META_HEARD.name])
        self.assertTrue(state.applied)
        self.addCleanup(upstream.uninstall)

    def test_an_event_nobody_subscribes_never_reaches_the_broker(self) -> None:
        self.assertIsNone(self.agent.publish("wamp.subscription.on_subscribe", 1, 2))
        answered = self.agent.publish("wamp.session.on_leave", 1, options=PublishOptions(acknowledge=True))
        self.assertIsNone(self.successResultOf(answered))
        self.assertEqual(self.published, [])

    def test_an_event_someone_subscribes_reaches_it(self) -> None:
        heard: List[Any] = []
        listener = ApplicationSession(ComponentConfig(names.REALM))
        RouterApplicationSession(listener, self.router, authid="node", authrole=BACKEND)
        listener.subscribe(lambda *args: heard.append(args), "wamp.subscription.on_subscribe")
        self.agent.publish("wamp.subscription.on_subscribe", 1, 2)
        self.agent.publish("wamp.subscription.on_create", 1, {"id": 2})  # still nobody for this one
        self.assertEqual(self.published, ["wamp.subscription.on_subscribe"])
        self.assertEqual(heard, [(1, 2)])
        # a prefix subscription counts too
        listener.subscribe(lambda *args: heard.append(args), "wamp.session", options=SubscribeOptions(match="prefix"))
        self.agent.publish("wamp.session.on_join", {"session": 3})
        self.assertEqual(self.published, ["wamp.subscription.on_subscribe", "wamp.session.on_join"])
        self.assertEqual(heard, [(1, 2), ({"session": 3},)])

    def test_without_the_patch_every_event_goes_through_the_broker(self) -> None:
        upstream.uninstall()
        self.agent.publish("wamp.subscription.on_subscribe", 1, 2)
        self.assertEqual(self.published, ["wamp.subscription.on_subscribe"])


class HeardTests(SynchronousTestCase):
    """``sessions.heard``: whether a component's event would reach any subscription."""

    def setUp(self) -> None:
        self.router, _ = realm_with_service_session()
        self.addCleanup(upstream.uninstall)

    def test_only_a_matching_subscription_makes_a_topic_heard(self) -> None:
        upstream.install(upstream.Wiring(router=self.router), only=[sessions.META_HEARD.name])
        self.assertFalse(sessions.heard(self.router, "deptcast.presence.cardio"))
        listener = ApplicationSession(ComponentConfig(names.REALM))
        RouterApplicationSession(listener, self.router, authid="node", authrole=BACKEND)
        listener.subscribe(lambda *args: None, "deptcast.presence.cardio")
        self.assertTrue(sessions.heard(self.router, "deptcast.presence.cardio"))
        self.assertFalse(sessions.heard(self.router, "deptcast.presence.onco"))

    def test_in_doubt_a_topic_is_heard(self) -> None:
        self.assertTrue(sessions.heard(self.router, "deptcast.presence.cardio"))  # the patch not applied
        upstream.install(upstream.Wiring(router=self.router), only=[sessions.META_HEARD.name])
        self.assertTrue(sessions.heard(None, "deptcast.presence.cardio"))


class MetaLocalTests(SynchronousTestCase):
    """``sessions.meta_local``: a component that follows a meta topic is called in-process with
    the event's arguments, and the event reaches the broker only for a WAMP subscriber."""

    def setUp(self) -> None:
        self.router, self.agent = realm_with_service_session()
        self.published = topics_published(self.router)
        self.addCleanup(upstream.uninstall)
        self.component = ApplicationSession(ComponentConfig(names.REALM))
        RouterApplicationSession(self.component, self.router, authid="node", authrole=BACKEND)

    def install(self) -> None:
        states = upstream.install(upstream.Wiring(router=self.router),
                                  only=[sessions.META_HEARD.name, sessions.META_LOCAL.name])
        self.assertTrue(all(s.applied for s in states))

    def test_a_follower_is_called_in_process_and_the_broker_is_left_out(self) -> None:
        self.install()
        heard: List[Any] = []
        self.assertTrue(sessions.follow(self.component, lambda *args: heard.append(args), "wamp.session.on_join"))
        self.assertTrue(sessions.follow(self.component, lambda *args: heard.append(("left",) + args),
                                        "wamp.session.on_leave"))
        self.agent.publish("wamp.session.on_join", {"session": 3, "authid": "u1"})
        answered = self.agent.publish("wamp.session.on_leave", 3, options=PublishOptions(acknowledge=True))
        self.assertIsNone(self.successResultOf(answered))
        self.assertEqual(heard, [({"session": 3, "authid": "u1"},), ("left", 3)])
        self.assertEqual(self.published, [])

    def test_a_wamp_subscriber_still_gets_the_event_once_and_the_follower_too(self) -> None:
        self.install()
        followed: List[Any] = []
        subscribed: List[Any] = []
        sessions.follow(self.component, lambda *args: followed.append(args), "wamp.subscription.on_subscribe")
        listener = ApplicationSession(ComponentConfig(names.REALM))
        RouterApplicationSession(listener, self.router, authid="link", authrole=BACKEND)
        listener.subscribe(lambda *args: subscribed.append(args), "wamp.subscription.on_subscribe")
        self.agent.publish("wamp.subscription.on_subscribe", 1, 2)
        self.assertEqual(followed, [(1, 2)])
        self.assertEqual(subscribed, [(1, 2)])
        self.assertEqual(self.published, ["wamp.subscription.on_subscribe"])

    def test_a_failing_follower_is_reported_and_the_others_still_called(self) -> None:
        self.install()
        errors: List[Any] = []
        self.component.onUserError = lambda fail, msg: errors.append(fail.value)
        heard: List[Any] = []

        def broken(*args: Any) -> None:
            raise ValueError("broken handler")
        sessions.follow(self.component, broken, "wamp.session.on_join")
        sessions.follow(self.component, lambda *args: heard.append(args), "wamp.session.on_join")
        self.agent.publish("wamp.session.on_join", {"session": 4})
        self.assertEqual([str(e) for e in errors], ["broken handler"])
        self.assertEqual(heard, [({"session": 4},)])

    def test_a_component_that_left_is_no_longer_called(self) -> None:
        self.install()
        heard: List[Any] = []
        sessions.follow(self.component, lambda *args: heard.append(args), "wamp.session.on_join")
        self.component._session_id = None  # detached (what is_attached reads)
        self.agent.publish("wamp.session.on_join", {"session": 5})
        self.assertEqual(heard, [])

    def test_without_the_patch_a_component_subscribes_as_before(self) -> None:
        upstream.install(upstream.Wiring(router=self.router), only=[sessions.META_HEARD.name])
        self.assertFalse(sessions.follow(self.component, lambda *args: None, "wamp.session.on_join"))
        self.install()
        self.assertFalse(sessions.follow(self.component, lambda *args: None, "deptcast.presence.cardio"))

    def test_a_follower_the_publish_excludes_is_left_out_as_the_broker_would(self) -> None:
        self.install()
        heard: List[Any] = []
        sessions.follow(self.component, lambda *args: heard.append(args), "wamp.subscription.on_create")
        self.agent.publish("wamp.subscription.on_create", 1, {"id": 2}, options=PublishOptions(exclude_authid=["node"]))
        self.assertEqual(heard, [])
        self.agent.publish("wamp.subscription.on_create", 1, {"id": 3}, options=PublishOptions(exclude_authid=["n2"]))
        self.assertEqual(heard, [(1, {"id": 3})])
