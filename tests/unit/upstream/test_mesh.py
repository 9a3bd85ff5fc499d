"""The mesh's echo cut of :mod:`components.upstream.mesh`: a link's local leg republishes with
the peers' link role excluded, and Crossbar's broker then leaves every session of that role
out of the receivers (real ``RLinkLocalSession`` and ``Broker`` code; no network)."""

from types import SimpleNamespace

import pytest
from autobahn.wamp import message
from autobahn.wamp.types import ComponentConfig
from crossbar.router.broker import Broker
from crossbar.worker.rlink import RLinkLocalSession, RLinkRemoteSession
from twisted.internet import defer

from components import upstream
from components.core.names import RLINK_ROLE
from components.upstream.mesh import exclude_links


@pytest.fixture
def patched():
    upstream.install(upstream.Wiring(peers=("n2",)), only=["mesh.one_hop"])
    yield
    upstream.uninstall(["mesh.one_hop"])


def join_local_leg() -> RLinkLocalSession:
    """An rlink local leg's ``onJoin`` (no forwarding set up: the leg only reads its options)."""
    extra = {"on_ready": defer.Deferred(), "other": None, "rlink": "to-n2", "forward_events": False,
             "forward_invocations": False}
    session = RLinkLocalSession(ComponentConfig("deptcast", extra))
    # the upstream onJoin asserts its peer is a remote leg
    manager = SimpleNamespace(controller=None)
    session.config.extra["other"] = RLinkRemoteSession(ComponentConfig("deptcast", {"rlink_manager": manager}))
    session.onJoin(SimpleNamespace(realm="deptcast", authid="n1", authrole="trusted", session=1))
    return session


def test_upstream_republishes_to_every_role():
    assert join_local_leg()._exclude_authrole is None


def test_the_patched_local_leg_excludes_the_peers_links(patched):
    assert join_local_leg()._exclude_authrole == [RLINK_ROLE]


def test_the_broker_leaves_the_excluded_role_out():
    client, link_c, link_d = object(), object(), object()
    router = SimpleNamespace(_session_id_to_session={}, _authid_to_sessions={},
                             _authrole_to_sessions={RLINK_ROLE: {link_c, link_d}, "member": {client}})
    broker = Broker.__new__(Broker)
    broker._router = router
    publish = message.Publish(1, "deptcast.dept.a", exclude_authrole=[RLINK_ROLE],
                              forward_for=[{"session": 7, "authid": "p", "authrole": "publisher"}])
    assert broker._filter_publish_receivers({client, link_c, link_d}, publish) == {client}
    plain = message.Publish(2, "deptcast.dept.a")
    assert broker._filter_publish_receivers({client, link_c, link_d}, plain) == {client, link_c, link_d}


@pytest.mark.parametrize("before, after", [
    ({}, [RLINK_ROLE]),
    ({"exclude_authrole": None}, [RLINK_ROLE]),
    ({"exclude_authrole": "other"}, ["other", RLINK_ROLE]),
    ({"exclude_authrole": [RLINK_ROLE]}, [RLINK_ROLE]),
])
def test_exclude_links_keeps_what_was_there(before, after):
    extra = dict(before)
    assert exclude_links(extra) == after
    assert extra["exclude_authrole"] == after
