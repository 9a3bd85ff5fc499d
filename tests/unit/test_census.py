"""Unit tests of components.core.census: sessions, links and subscriptions, counted."""

from components.core.census import Census, topic_kind


def test_topic_kinds():
    assert [topic_kind(t) for t in ("deptcast.dept.hr", "deptcast.all", "deptcast.user.hr_bob",
                                    "deptcast.presence.hr", "deptcast.internal.presence", "wamp.session.on_join")] \
        == ["dept", "all", "user", "presence", None, None]


def test_sessions_users_and_links():
    c = Census(peers=("n2", "n3"))
    c.joined(1, "member", "alice", "hr")
    c.joined(2, "member", "alice", "hr")      # alice's second tab
    c.joined(3, "publisher", "pat", "admin")
    c.joined(4, "deptcast-rlink", "n2")
    c.joined(5, "deptcast-rlink", "n9")       # not a configured peer
    c.joined(6, "deptcast-backend", "x")      # a component
    c.joined(7, "member", "bob", None)        # no department: not a token session
    assert (c.client_sessions, c.users, c.peers_linked) == (3, 2, {"n2"})
    c.left(1)
    assert (c.client_sessions, c.users) == (2, 2)
    c.left(2)
    c.left(4)
    assert (c.client_sessions, c.users, c.peers_linked) == (1, 1, set())


def test_subscribers_by_kind_count_client_sessions_only():
    c = Census(peers=("n2",))
    c.joined(1, "member", "alice", "hr")
    c.joined(2, "member", "bob", "hr")
    c.joined(9, "deptcast-rlink", "n2")
    c.created(100, "deptcast.dept.hr")
    c.created(101, "deptcast.all")
    c.created(102, "deptcast.user.hr_alice")
    for sid in (1, 2, 9):
        c.subscribed(sid, 100)
        c.subscribed(sid, 101)
    c.subscribed(1, 102)
    assert c.subscribers() == {"dept": 2, "all": 2, "user": 1, "presence": 0}
    c.unsubscribed(2, 101)
    c.left(1)
    assert c.subscribers() == {"dept": 1, "all": 0, "user": 0, "presence": 0}
    c.deleted(100)
    assert c.subscribers()["dept"] == 0


def test_a_client_that_leaves_is_taken_out_of_its_own_subscriptions_only():
    """Every client has a subscription of its own (its user topic): a departure that looked
    through every subscription made a storm's departures quadratic."""
    census = Census()
    touched = []

    class Members(set):
        def discard(self, item):
            touched.append(item)
            super().discard(item)

    for sid in range(1, 101):
        census.joined(sid, "member", f"u{sid}", "cardio")
        census._members[1000 + sid] = Members()
        census.created(1000 + sid, f"deptcast.user.cardio_u{sid}")
        census.subscribed(sid, 1000 + sid)
    census.left(7)
    assert touched == [7]
    assert census.subscribers()["user"] == 99
    census.unsubscribed(8, 1008)
    census.deleted(1009)
    census.left(8)
    census.left(9)
    assert census.subscribers()["user"] == 97
    assert census._held.get(8) is None and census._held.get(9) is None
