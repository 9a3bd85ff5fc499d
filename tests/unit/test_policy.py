"""Unit tests of components.core.policy: the contract's authorization table."""

import pytest

from components.core.targets import parse_target
from components.core.policy import authorize, may_send, may_subscribe
from components.core.tokens import Identity

ALICE = Identity("alice", "cardio", "member")
PAT = Identity("pat", "admin", "publisher")


@pytest.mark.parametrize("identity, topic, allowed", [
    (ALICE, "deptcast.dept.cardio", True),
    (ALICE, "deptcast.dept.ortho", False),
    (ALICE, "deptcast.all", True),
    (ALICE, "deptcast.user.cardio_alice", True),
    (ALICE, "deptcast.user.alice", False),
    (ALICE, "deptcast.user.ortho_alice", False),  # another department's alice is someone else
    (ALICE, "deptcast.user.cardio_bob", False),
    (ALICE, "deptcast.presence.cardio", True),
    (ALICE, "deptcast.presence.ortho", False),
    (ALICE, "deptcast.dept.", False),
    (ALICE, "deptcast.dept.cardio.x_y", False),
    (ALICE, "deptcast.internal.authenticate", False),
    (ALICE, "wamp.session.on_join", False),
    (PAT, "deptcast.dept.ortho", True),
    (PAT, "deptcast.presence.ortho", True),
    (PAT, "deptcast.user.cardio_alice", False),
    (PAT, "deptcast.user.admin_pat", True),
    (PAT, "deptcast.user.pat", False),
])
def test_may_subscribe(identity, topic, allowed):
    assert may_subscribe(identity, topic) is allowed


@pytest.mark.parametrize("identity, to, allowed", [
    (ALICE, "cardio", True),
    (ALICE, "ortho", False),
    (ALICE, "All", False),
    (ALICE, "cardio_bob", True),
    (ALICE, "ortho_bob", False),
    (PAT, "ortho", True),
    (PAT, "All", True),
    (PAT, "ortho_bob", True),
])
def test_may_send(identity, to, allowed):
    assert may_send(identity, parse_target(to)) is allowed


@pytest.mark.parametrize("uri, action, options, allowed", [
    ("deptcast.dept.cardio", "subscribe", {}, True),
    ("deptcast.dept.cardio", "subscribe", {"match": "prefix"}, False),
    ("deptcast.dept", "subscribe", {"match": "prefix"}, False),
    ("deptcast.dept.cardio", "publish", {}, False),
    ("deptcast.all", "publish", {}, False),
    ("my.topic", "publish", {}, False),
    ("deptcast.send", "call", {}, True),
    ("deptcast.history", "call", {}, True),
    ("deptcast.presence.online", "call", {}, True),
    ("deptcast.internal.send_as", "call", {}, False),
    ("deptcast.internal.authenticate", "call", {}, False),
    ("wamp.session.get", "call", {}, False),
    ("deptcast.send", "register", {}, False),
    ("my.proc", "register", {}, False),
])
def test_authorize_member(uri, action, options, allowed):
    assert authorize(ALICE, uri, action, options) is allowed
