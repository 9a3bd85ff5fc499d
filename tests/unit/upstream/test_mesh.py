"""The mesh's echo cut of :mod:`components.upstream.mesh`: a link's local leg republishes with
the peers' link role excluded, and Crossbar's broker then leaves every session of that role
out of the receivers (real ``RLinkLocalSession`` and ``Broker`` code; no network)."""

from types import SimpleNamespace

import pytest
from autobahn.wamp import message
from autobahn.wamp.types import ComponentConfig, PublishOptions
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


class Sent:
    def __init__(self) -> None:
        self.messages: list = []

    def send(self, msg) -> None:
        self.messages.append(msg)


@pytest.fixture
def republish():
    upstream.install(upstream.Wiring(peers=("n2",)), only=["mesh.republish"])
    yield
    upstream.uninstall(["mesh.republish"])


def local_leg_publishing(options: PublishOptions):
    manager = SimpleNamespace(controller=None)
    session = RLinkLocalSession(ComponentConfig("deptcast", {"other": RLinkRemoteSession(
        ComponentConfig("deptcast", {"rlink_manager": manager}))}))
    session._transport = Sent()
    answer = session.publish("deptcast.dept.a", "x", options=options)
    return answer, session._transport.messages[-1]


def forwarded() -> PublishOptions:
    return PublishOptions(acknowledge=True, exclude_me=True,
                          forward_for=[{"session": 7, "authid": "p", "authrole": "publisher"}])


def test_upstream_waits_for_an_acknowledgement_of_each_republish():
    answer, sent = local_leg_publishing(forwarded())
    assert sent.acknowledge is True and answer is not None


def test_a_forwarded_event_is_republished_unacknowledged(republish):
    answer, sent = local_leg_publishing(forwarded())
    assert sent.acknowledge is None or sent.acknowledge is False
    assert answer is None
    assert sent.forward_for == [{"session": 7, "authid": "p", "authrole": "publisher"}]


def test_a_publish_of_its_own_stays_acknowledged(republish):
    answer, sent = local_leg_publishing(PublishOptions(acknowledge=True))
    assert sent.acknowledge is True and answer is not None
