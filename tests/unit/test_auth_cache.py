"""Which answers of the dynamic authorizer Crossbar may cache.

Crossbar keeps an answer marked ``cache`` per (realm, authrole, URI, action) and gives it to
every later session of the role, whatever its department, user or options
(``crossbar.router.router.Router.authorize``). Only answers that are the same for the whole
role may say so; the rest are asked per session (the integration test
``test_router_refuses_what_clients_may_not_do`` shows a member of another department does not
ride on an allowed subscription).
"""

import pytest

from components.wamp.auth import authorize


def session(user, dept, role="member"):
    return {"session": 1, "authid": user, "authrole": role, "authextra": {"dept": dept},
            "authmethod": "ticket", "authprovider": "function"}


def answer(sess, uri, action, options=None):
    return authorize(sess, uri, action, options or {})


ALICE = session("alice", "cardio")
PAT = session("pat", "admin", "publisher")


@pytest.mark.parametrize("who", [ALICE, PAT])
def test_role_wide_answers_are_cached(who):
    assert answer(who, "deptcast.all", "subscribe", {"match": "exact"}) == {"allow": True, "cache": True}
    assert answer(who, "deptcast.all", "subscribe") == {"allow": True, "cache": True}
    for proc in ("deptcast.send", "deptcast.history", "deptcast.presence.online"):
        assert answer(who, proc, "call") == {"allow": True, "disclose": True, "cache": True}
    # refused to every client, whoever it is
    assert answer(who, "wamp.session.list", "call") == {"allow": False, "disclose": False, "cache": True}
    assert answer(who, "deptcast.internal.authorize", "call")["cache"] is True
    assert answer(who, "deptcast.all", "publish") == {"allow": False, "disclose": False, "cache": True}
    assert answer(who, "deptcast.send", "register") == {"allow": False, "disclose": False, "cache": True}


@pytest.mark.parametrize("uri, allowed", [
    ("deptcast.dept.cardio", True), ("deptcast.presence.cardio", True), ("deptcast.user.cardio_alice", True),
    ("deptcast.dept.onco", False), ("deptcast.presence.onco", False), ("deptcast.user.cardio_bob", False),
    ("deptcast.user.onco_alice", False), ("some.other.topic", False),
])
def test_answers_that_depend_on_the_session_are_never_cached(uri, allowed):
    assert answer(ALICE, uri, "subscribe") == {"allow": allowed, "cache": False}


@pytest.mark.parametrize("match", ["prefix", "wildcard"])
def test_a_refused_pattern_subscription_is_not_cached(match):
    """The cache ignores the options: a cached refusal of a prefix subscription to
    ``deptcast.all`` would refuse the exact one to the whole role."""
    assert answer(ALICE, "deptcast.all", "subscribe", {"match": match}) == {"allow": False, "cache": False}
    assert answer(ALICE, "deptcast.dept", "subscribe", {"match": match}) == {"allow": False, "cache": False}


def test_the_same_topic_is_asked_again_for_each_session():
    """Two members of different departments asking for the same department topic get
    different answers: each is its own, uncached."""
    bob = session("bob", "onco")
    assert answer(ALICE, "deptcast.dept.cardio", "subscribe") == {"allow": True, "cache": False}
    assert answer(bob, "deptcast.dept.cardio", "subscribe") == {"allow": False, "cache": False}
    assert answer(PAT, "deptcast.dept.cardio", "subscribe") == {"allow": True, "cache": False}
