"""The client roles' authorizer asked in-process (:mod:`components.upstream.roles`), on a real
Crossbar router made as the node config makes it: the same answers, the router's own cache
around them, and the roles put back when the patch is taken out."""

from types import SimpleNamespace
from typing import Any, List

from autobahn.wamp.types import SessionDetails
from crossbar.router.role import RouterRoleDynamicAuth, RouterRoleStaticAuth
from crossbar.router.router import RouterFactory
from crossbar.worker.types import RouterRealm
from twisted.trial.unittest import SynchronousTestCase

from components import upstream
from components.core import names
from components.upstream import roles
from components.wamp import auth


def install(router, authorize):
    [status] = upstream.install(upstream.Wiring(router=router, authorize=authorize), only=[roles.IN_PROCESS.name])
    return status


def node_router():
    """A realm with the roles of ``deptcast node-config`` (``components.ops.nodeconfig``)."""
    factory = RouterFactory("node1", "worker1", None)
    realm = RouterRealm(None, None, {"name": names.REALM})
    factory.start_realm(realm)
    for role in names.CLIENT_ROLES:
        factory.add_role(names.REALM, {"name": role, "authorizer": names.PROC_AUTHORIZE})
    factory.add_role(names.REALM, {"name": "backend", "permissions": []})
    return factory.get(names.REALM)


def client(session_id: int, user: str, dept: str, role: str = names.MEMBER) -> Any:
    details = SessionDetails(realm=names.REALM, session=session_id, authid=user, authrole=role,
                             authmethod="ticket", authprovider="function", authextra={"dept": dept})
    return SimpleNamespace(_realm=names.REALM, _authrole=role, _authid=user, _session_id=session_id,
                           _session_details=details)


class InProcessRoleTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.router = node_router()
        self.asked: List[Any] = []

        def authorize(details, uri, action, options):
            self.asked.append((details["authid"], uri, action))
            return auth.authorize(details, uri, action, options)
        self.assertTrue(install(self.router, authorize).applied)
        self.addCleanup(upstream.uninstall)

    def decide(self, session, uri, action="subscribe", options=None):
        return self.successResultOf(self.router.authorize(session, uri, action, options or {"match": "exact"}))

    def test_the_client_roles_are_replaced_and_others_left_alone(self):
        for role in names.CLIENT_ROLES:
            self.assertIsInstance(self.router._roles[role], roles.InProcessRole)
            self.assertIsInstance(self.router._roles[role].replaces, RouterRoleDynamicAuth)
        self.assertIsInstance(self.router._roles["backend"], RouterRoleStaticAuth)
        # again: nothing changes (the patch is in place)
        in_place = dict(self.router._roles)
        self.assertTrue(install(self.router, lambda *a: False).applied)
        self.assertEqual(self.router._roles, in_place)

    def test_the_answers_are_the_authorizers_for_each_session(self):
        alice, eve = client(1, "alice", "cardio"), client(2, "eve", "onco")
        self.assertEqual(self.decide(alice, "deptcast.dept.cardio"), {"allow": True, "cache": False})
        self.assertEqual(self.decide(eve, "deptcast.dept.cardio"), {"allow": False, "cache": False})
        self.assertEqual(self.decide(alice, "deptcast.user.cardio_alice"), {"allow": True, "cache": False})
        self.assertEqual(self.decide(eve, "deptcast.user.cardio_alice"), {"allow": False, "cache": False})
        self.assertEqual(self.decide(alice, "deptcast.dept", options={"match": "prefix"}),
                         {"allow": False, "cache": False})
        self.assertEqual(self.asked, [("alice", "deptcast.dept.cardio", "subscribe"),
                                      ("eve", "deptcast.dept.cardio", "subscribe"),
                                      ("alice", "deptcast.user.cardio_alice", "subscribe"),
                                      ("eve", "deptcast.user.cardio_alice", "subscribe"),
                                      ("alice", "deptcast.dept", "subscribe")])

    def test_the_router_caches_what_may_be_cached(self):
        alice, bob = client(1, "alice", "cardio"), client(3, "bob", "cardio")
        self.assertEqual(self.decide(alice, "deptcast.all"), {"allow": True, "cache": True})
        self.assertEqual(self.decide(bob, "deptcast.all"), {"allow": True, "cache": True})
        self.assertEqual(self.decide(bob, "deptcast.history", "call"), {"allow": True, "disclose": True, "cache": True})
        self.assertEqual(self.decide(alice, "deptcast.history", "call"),
                         {"allow": True, "disclose": True, "cache": True})
        self.assertEqual(self.asked, [("alice", "deptcast.all", "subscribe"), ("bob", "deptcast.history", "call")])

    def test_uninstall_puts_the_dynamic_roles_back(self):
        upstream.uninstall([roles.IN_PROCESS.name])
        for role in names.CLIENT_ROLES:
            self.assertIsInstance(self.router._roles[role], RouterRoleDynamicAuth)


def test_a_node_config_whose_roles_are_not_deptcasts_dynamic_ones_keeps_its_roles():
    router = node_router()
    router._roles[names.MEMBER]._authorizer = "some.other.authorizer"
    status = install(router, lambda *a: True)
    assert not status.applied and "member" in status.reason
    assert isinstance(router._roles[names.MEMBER], RouterRoleDynamicAuth)
    assert isinstance(router._roles[names.PUBLISHER], RouterRoleDynamicAuth)
    assert not install(None, lambda *a: True).applied
