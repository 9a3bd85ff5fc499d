"""The pure parts of the send hold of a starting cluster node (the rest runs in
``test_cluster.py`` against real nodes)."""

from components.core.settings import load_settings
from components.core.names import sync_topic
from components.wamp.linkgate import LinkGate, missing_topics
from components.core.policy import may_subscribe
from components.core.tokens import Identity
from tests.support.nodes import TEST_SECRET


def test_missing_topics_ignores_meta_topics():
    peer = ["deptcast.dept.hr", "deptcast.all", "wamp.session.on_leave", "deptcast.user.hr_bob"]
    assert missing_topics(peer, {"deptcast.all"}) == ["deptcast.dept.hr", "deptcast.user.hr_bob"]
    assert missing_topics(peer, {"deptcast.dept.hr", "deptcast.all", "deptcast.user.hr_bob"}) == []


def test_clients_may_not_listen_to_the_sync_topic():
    assert not may_subscribe(Identity("boss", "mgmt", "publisher"), sync_topic("n1"))


def test_a_single_node_never_holds():
    gate = LinkGate(session=None, node="solo", peers=[], timeout=30, reactor=None)
    assert gate.is_open
    assert gate.wait().called


def test_peers_and_link_wait_settings(tmp_path):
    env = {"DEPTCAST_JWT_SECRET": TEST_SECRET, "DEPTCAST_PEERS": "n2, n3,", "DEPTCAST_LINK_WAIT": "7.5"}
    settings = load_settings(tmp_path, env)
    assert settings.peers == ("n2", "n3") and settings.link_wait == 7.5
    settings = load_settings(tmp_path, {"DEPTCAST_JWT_SECRET": TEST_SECRET})
    assert settings.peers == () and settings.link_wait == 30.0
