"""The node's own publications in one plain pass (``broker.in_process``), on a real Crossbar
router: every receiver gets the event Crossbar's own ``processPublish`` sends it (the same
subscription, arguments, disclosure, ``forward_for``, topic and correlation fields, in the
same order, with the same receivers left out), and what the plain pass does not decide
alone still goes to Crossbar's."""

from typing import Any, Dict, List, Tuple

import txaio
from autobahn.twisted.wamp import ApplicationSession
from autobahn.wamp.types import ComponentConfig, PublishOptions, SubscribeOptions
from crossbar.router.router import RouterFactory
from crossbar.router.session import RouterApplicationSession
from crossbar.worker.types import RouterRealm
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from components import upstream
from components.core import names
from components.upstream import broker

BACKEND = names.BACKEND_ROLE
RLINK = names.RLINK_ROLE


def _role(name: str, cache: bool = True) -> Dict[str, Any]:
    return {"name": name, "permissions": [
        {"uri": "", "match": "prefix", "allow": {"call": True, "register": True, "publish": True, "subscribe": True},
         "disclose": {"caller": True, "publisher": True}, "cache": cache}]}


def _session(router: Any, authid: str, authrole: str) -> ApplicationSession:
    session = ApplicationSession(ComponentConfig(names.REALM))
    RouterApplicationSession(session, router, authid=authid, authrole=authrole)
    # (as a session that joined over a transport is known by its role: what exclude_authrole reads)
    router._session_joined(session, session._session_details)
    return session


class World:
    """A realm with a backend publisher, a trusted one (a link's local leg), and subscribers of
    every kind: members on the exact topic, one on a prefix, a peer's link session."""

    def __init__(self, prefix: bool = True) -> None:
        factory = RouterFactory("node1", "worker1", None)
        realm = RouterRealm(None, None, {"name": names.REALM})
        factory.start_realm(realm)
        for role in (_role(BACKEND), _role("member"), _role(RLINK), _role("nocache", cache=False)):
            factory.add_role(names.REALM, role)
        self.router = factory.get(names.REALM)
        self.backend = _session(self.router, "node", BACKEND)
        self.leg = _session(self.router, "leg", "trusted")
        self.nocache = _session(self.router, "other", "nocache")
        self.receivers = [_session(self.router, f"m{n}", "member") for n in range(5)]
        for receiver in self.receivers:
            receiver.subscribe(lambda *a, **kw: None, "deptcast.dept.a")
        self.prefix = _session(self.router, "p", "member")
        if prefix:
            self.prefix.subscribe(lambda *a, **kw: None, "deptcast.dept", options=SubscribeOptions(match="prefix"))
        self.link = _session(self.router, "peer-link", RLINK)
        self.link.subscribe(lambda *a, **kw: None, "deptcast.dept.a")
        # the publisher subscribes too: it is left out unless it asks (exclude_me=False)
        self.backend.subscribe(lambda *a, **kw: None, "deptcast.dept.a")
        # a topic of the meta API: only the trusted role may publish there
        self.receivers[0].subscribe(lambda *a, **kw: None, "wamp.test.x")
        self.sent: List[Tuple[Any, Any]] = []
        upstream_send = self.router.send

        def send(session: Any, msg: Any) -> None:
            if type(msg).__name__ == "Event":
                self.sent.append((session, msg))  # (recorded, not handled: the sessions only stand for receivers)
            else:
                upstream_send(session, msg)
        self.router.send = send

    def events(self) -> List[Any]:
        """What each receiver got, with session ids as names (they differ between worlds), per
        publication in the order of publication (the receivers of one publication in any order:
        the broker's subscriber sets have no order of their own)."""
        ids = {s._session_id: s._authid for s in [self.backend, self.leg, self.nocache, self.prefix, self.link,
                                                   *self.receivers]}
        out: Dict[int, List[Tuple[Any, ...]]] = {}
        for session, msg in self.sent:
            forward_for = [dict(f, session=ids.get(f["session"], f["session"])) for f in msg.forward_for or []]
            out.setdefault(msg.publication, []).append((
                session._authid, type(msg.subscription), msg.args, msg.kwargs, ids.get(msg.publisher),
                msg.publisher_authid, msg.publisher_authrole, msg.topic, forward_for, msg.correlation_uri,
                msg.correlation_is_anchor, msg.correlation_is_last, msg._router_internal[1:]))
        return [sorted(events, key=repr) for events in out.values()]


def _publish_all(world: World) -> None:
    backend, leg = world.backend, world.leg
    for n in range(3):  # the first fills the authorization cache, the others find it there
        backend.publish("deptcast.dept.a", {"seq": n})
    backend.publish("deptcast.dept.b", "prefix only")
    backend.publish("deptcast.dept.a", "me too", options=PublishOptions(exclude_me=False))
    backend.publish("deptcast.dept.c.nobody", "nobody")
    # (its publish authorization cached, as another path of the router could leave it)
    world.router.authorize(backend, "wamp.test.x", "publish", {})
    backend.publish("wamp.test.x", "restricted")
    backend.publish("wamp.test.x", "restricted again")
    leg.publish("wamp.test.x", "trusted")
    leg.publish("wamp.test.x", "trusted again")
    # a forwarded event republished by a link's local leg (mesh.one_hop, mesh.republish)
    forward_for = [{"session": 77, "authid": "sender", "authrole": "publisher"}]
    for n in range(2):
        leg.publish("deptcast.dept.a", {"fwd": n},
                    options=PublishOptions(forward_for=forward_for, exclude_authrole=[RLINK]))
    # not decided by the plain pass: acknowledged, filtered by session, a role without a cache
    backend.publish("deptcast.dept.a", "acked", options=PublishOptions(acknowledge=True))
    backend.publish("deptcast.dept.a", "one only", options=PublishOptions(eligible_authid=["m1"]))
    world.nocache.publish("deptcast.dept.a", "not cached")
    world.nocache.publish("deptcast.dept.a", "not cached again")


class InProcessPublishTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        loop = txaio.config.loop
        txaio.config.loop = self.clock
        self.addCleanup(setattr, txaio.config, "loop", loop)

    def _world(self, patched: bool, prefix: bool = True) -> World:
        world = World(prefix)
        if patched:
            [state] = upstream.install(upstream.Wiring(router=world.router), only=[broker.IN_PROCESS.name])
            self.assertTrue(state.applied)
            self.addCleanup(upstream.uninstall)
        return world

    def test_receivers_get_what_crossbars_broker_sends_them(self) -> None:
        expected = self._world(patched=False)
        _publish_all(expected)
        upstream.uninstall()
        plain = self._world(patched=True)
        _publish_all(plain)
        self.assertEqual(plain.events(), expected.events())
        got = [e for events in plain.events() for e in events]
        # the link's copy carries the publisher; the leg's republish leaves the links out and
        # extends forward_for; the publisher only gets its own with exclude_me=False
        self.assertIn(("peer-link", int, ({"seq": 1},), {}, "node", "node", BACKEND, None, [], "deptcast.dept.a",
                       False, False, ("node", BACKEND)), got)
        forwarded = [e for e in got if e[2] == ({"fwd": 0},)]
        self.assertEqual(sorted(e[0] for e in forwarded), ["m0", "m1", "m2", "m3", "m4", "node", "p"])
        self.assertEqual(forwarded[0][4:9], (None, "sender", "publisher", forwarded[0][7],
                                             [{"session": 77, "authid": "sender", "authrole": "publisher"},
                                              {"session": "leg", "authid": "leg", "authrole": "trusted"}]))
        self.assertEqual([e[0] for e in got if e[2] == ("me too",) and e[0] == "node"], ["node"])
        self.assertEqual([e[2] for e in got if e[0] == "node" and e[5] == "node"], [("me too",)])
        self.assertEqual([e[7] for e in got if e[2] == ("prefix only",)], ["deptcast.dept.b"])
        self.assertEqual(sorted(e[2] for e in got if e[0] == "m0" and e[9] == "wamp.test.x"),
                         [("trusted",), ("trusted again",)])

    def test_the_plain_pass_asks_no_authorization_once_it_is_cached(self) -> None:
        world = self._world(patched=True)
        asked: List[str] = []
        authorize = world.router.authorize

        def counted(session: Any, uri: str, action: str, options: Any) -> Any:
            asked.append(uri)
            return authorize(session, uri, action, options)
        world.router.authorize = counted
        for n in range(3):
            world.backend.publish("deptcast.dept.a", n)
        world.leg.publish("deptcast.dept.a", "fwd", options=PublishOptions(
            forward_for=[{"session": 1, "authid": "x", "authrole": "publisher"}], exclude_authrole=[RLINK]))
        self.assertEqual(asked, ["deptcast.dept.a"])  # the first, by Crossbar's broker (which caches it)
        # each of the backend's to 5 members, the prefix and the link; the leg's to those and
        # the backend's session, but not the link
        self.assertEqual(len(world.sent), 3 * 7 + 7)

    def test_a_large_audience_goes_out_in_chunks_as_crossbar_sends_it(self) -> None:
        for patched in (False, True):
            # (one subscription: Crossbar's later chunks send the last subscription's event)
            world = self._world(patched, prefix=False)
            world.router._broker._options.event_dispatching_chunk_size = 2
            world.backend.publish("deptcast.dept.a", "warm")  # (fills the cache)
            self.clock.advance(0)
            self.clock.advance(0)
            self.clock.advance(0)
            world.sent.clear()
            world.backend.publish("deptcast.dept.a", "chunked")
            counts = [len(world.sent)]
            for _ in range(3):
                self.clock.advance(0)
                counts.append(len(world.sent))
            # the first chunk at once, the rest on the next turns (a Clock runs them in one advance)
            self.assertEqual(counts, [2, 6, 6, 6], f"patched={patched}")
            upstream.uninstall()

    def test_a_receiver_gone_before_its_chunk_gets_nothing(self) -> None:
        world = self._world(patched=True, prefix=False)
        world.router._broker._options.event_dispatching_chunk_size = 1
        world.backend.publish("deptcast.dept.a", "warm")
        for _ in range(6):
            self.clock.advance(0)
        world.sent.clear()
        world.backend.publish("deptcast.dept.a", "late")
        first = world.sent[0][0]
        others = [s for s in world.receivers + [world.link] if s is not first]
        others[0]._transport = None
        for _ in range(6):
            self.clock.advance(0)
        self.assertEqual(len(world.sent), 5)
        self.assertNotIn(others[0], [s for s, _ in world.sent])
