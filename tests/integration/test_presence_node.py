"""``deptcast.presence.online`` and the ``deptcast.presence.<dept>`` events on a real node
(the module's ``node`` fixture from conftest)."""

import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from twisted.internet import defer, reactor, task

from components.core import names
from tests.support.legacy import connect_legacy
from tests.support.nodes import token
from tests.support.wamp import call_error, connect, wait_for


def _online(client, dept):
    return client.call(names.PROC_PRESENCE_ONLINE, dept)


@defer.inlineCallbacks
def _answer_is(client, dept, users, what):
    """Wait until ``online(dept)`` lists exactly ``users``; return the answer."""
    expected = {"dept": dept, "count": len(users), "users": sorted(users)}
    last = {}

    @defer.inlineCallbacks
    def poll():
        while True:
            try:
                last["answer"] = yield _online(client, dept)
            except ApplicationError as e:  # a poll this fast is rate-limited now and then
                if e.error != "deptcast.error.rate_limited":
                    raise
            if last["answer"] == expected:
                return
            yield task.deferLater(reactor, 0.05, lambda: None)
    yield poll().addTimeout(10, reactor)
    assert last["answer"] == expected, what
    return last["answer"]


@pytest_twisted.inlineCallbacks
def test_online_list_and_events_follow_sessions(node):
    """WAMP sessions and old pages (``/webSocket/<key>``) count alike, per user: an event on
    a user's first connection and on its last, whatever their kinds."""
    dept = "cardio"
    watcher = yield connect(node.url, token("watcher", dept))
    topic = names.presence_topic(dept)
    yield watcher.listen(topic)
    yield _answer_is(watcher, dept, ["watcher"], "the caller itself is online")
    events = watcher.events[topic]

    alice1 = yield connect(node.url, token("alice", dept))
    yield wait_for(lambda: len(events) == 1, 10, "alice's online event")
    assert events == [{"dept": dept, "user": "alice", "online": True, "count": 2}]
    # a second session of alice and an old page of hers: no event, still counted once
    alice2 = yield connect(node.url, token("alice", dept))
    alice_page = yield connect_legacy(node.port, names.user_key(dept, "alice"), token("alice", dept))
    bob = yield connect(node.url, token("bob", dept))
    # someone of another department: not in this list, no event on this topic
    other = yield connect(node.url, token("olga", "neuro"))
    yield wait_for(lambda: len(events) == 2, 10, "bob's online event")
    assert events[1] == {"dept": dept, "user": "bob", "online": True, "count": 3}
    # carol has only an old page: online all the same
    carol_page = yield connect_legacy(node.port, names.user_key(dept, "carol"), token("carol", dept))
    yield wait_for(lambda: len(events) == 3, 10, "carol's online event")
    assert events[2] == {"dept": dept, "user": "carol", "online": True, "count": 4}
    answer = yield _answer_is(alice1, dept, ["alice", "bob", "carol", "watcher"], "four users, alice once")
    assert answer["count"] == 4

    # alice leaves her WAMP sessions: her old page keeps her online, no event
    yield alice1.close()
    yield alice2.close()
    yield _answer_is(bob, dept, ["alice", "bob", "carol", "watcher"], "alice still has her page")
    yield alice_page.close()
    yield wait_for(lambda: len(events) == 4, 10, "alice's offline event")
    assert events[3] == {"dept": dept, "user": "alice", "online": False, "count": 3}
    yield carol_page.close()
    yield wait_for(lambda: len(events) == 5, 10, "carol's offline event")
    assert events[4] == {"dept": dept, "user": "carol", "online": False, "count": 2}
    yield _answer_is(bob, dept, ["bob", "watcher"], "alice and carol gone")
    yield bob.close()
    yield wait_for(lambda: len(events) == 6, 10, "bob's offline event")
    assert events[5] == {"dept": dept, "user": "bob", "online": False, "count": 1}
    answer = yield _online(other, "neuro")
    assert answer == {"dept": "neuro", "count": 1, "users": ["olga"]}
    yield other.close()
    yield task.deferLater(reactor, 0.3, lambda: None)  # room for a wrong or duplicate event to show
    assert len(events) == 6  # exactly once per change; olga's comings and goings are not on this topic
    yield watcher.close()


@pytest_twisted.inlineCallbacks
def test_members_ask_about_their_own_department_publishers_any(node):
    member = yield connect(node.url, token("mia", "ortho"))
    publisher = yield connect(node.url, token("pat", "admin", "publisher"))
    try:
        e = yield call_error(_online(member, "neuro"))
        assert e.error == "deptcast.error.not_authorized"
        for bad in ("", "no_underscores", "x" * 65, None, 5):
            e = yield call_error(_online(member, bad))
            assert e.error == "deptcast.error.invalid_frame", bad
        e = yield call_error(member.call(names.PROC_PRESENCE_ONLINE))
        assert e.error == "deptcast.error.invalid_frame"
        answer = yield _online(publisher, "ortho")
        assert answer == {"dept": "ortho", "count": 1, "users": ["mia"]}
        answer = yield _online(publisher, "admin")
        assert answer == {"dept": "admin", "count": 1, "users": ["pat"]}
        answer = yield _online(publisher, "empty")
        assert answer == {"dept": "empty", "count": 0, "users": []}
        # a publisher may subscribe to any department's presence, a member only to its own
        yield publisher.listen(names.presence_topic("ortho"))
        e = yield call_error(member.subscribe(lambda *a: None, names.presence_topic("neuro")))
        assert e.error == "wamp.error.not_authorized"
        # nobody may subscribe to the nodes' internal presence exchange
        e = yield call_error(publisher.subscribe(lambda *a: None, "deptcast.internal.presence"))
        assert e.error == "wamp.error.not_authorized"
    finally:
        yield member.close()
        yield publisher.close()
