"""Revocation across a 3-node cluster sharing PostgreSQL: one revoke ends the user's sessions on
every node, and its older tokens stay refused on a node that was down at the time and restarted
(it reads the revocations in force when it starts)."""

import os
import signal

import pytest
import pytest_twisted
from twisted.internet import threads

from components.core import names
from tests.support.legacy import HandshakeRefused, connect_legacy
from tests.support.nodes import token
from tests.support.wamp import JoinRefused, connect, wait_for

INVALID_TOKEN = "deptcast.error.invalid_token"


@pytest_twisted.inlineCallbacks
def test_revoke_ends_sessions_on_every_node_and_holds_across_a_restart(cluster):
    dept = f"rc-{os.urandom(3).hex()}"
    n1, n2, n3 = (cluster.nodes[n] for n in ("n1", "n2", "n3"))
    rex, rita = token("rex", dept), token("rita", dept)
    sessions = []
    for node in (n1, n2, n3):
        sessions.append((yield connect(node.url, rex)))
    legacy = yield connect_legacy(n2.port, f"{dept}_rex", rex)
    bystander = yield connect(n3.url, token("ben", dept))
    admin = yield connect(n1.url, token("ops", "ops", "admin"))
    yield admin.call(names.PROC_ADMIN_REVOKE, f"{dept}_rex")
    yield wait_for(lambda: all(s.closed.called for s in sessions) and legacy.closed.called, 15,
                   "rex's sessions on every node to end")
    assert [s.left_with.reason for s in sessions] == [names.CLOSE_REVOKED] * 3
    assert legacy.close_info[1] == 4003 and not bystander.closed.called
    yield bystander.close()

    # rita is revoked while n3 is down; n3 learns both revocations when it starts again
    rita_on_n1 = yield connect(n1.url, rita)
    yield threads.deferToThread(n3.stop, signal.SIGTERM)
    yield admin.call(names.PROC_ADMIN_REVOKE, f"{dept}_rita")
    yield wait_for(lambda: rita_on_n1.closed.called, 15, "rita's session on n1 to end")
    yield admin.close()
    yield threads.deferToThread(n3.start, 90.0)
    for old in (rex, rita):
        with pytest.raises(JoinRefused) as refused:
            yield connect(n3.url, old)
        assert refused.value.reason == INVALID_TOKEN and "revoked" in refused.value.message
    with pytest.raises(HandshakeRefused) as handshake:
        yield connect_legacy(n3.port, f"{dept}_rita", rita)
    assert handshake.value.status == 401
