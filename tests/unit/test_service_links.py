"""Unit tests of what the router worker's parts share about links and legacy sockets:
:mod:`components.service.links` and :mod:`components.service.presence`."""

from components.service.links import LinkState
from components.service.presence import LegacyUsers


def test_link_state_tells_each_change_once():
    state = LinkState()
    seen = []
    state.on_up(lambda p: seen.append(("up", p)))
    state.on_down(lambda p: seen.append(("down", p)))
    assert state.is_up("n1") is None
    state.down("n1")
    state.down("n1")            # a lost connection reported by two events: told once
    state.up("n1")
    state.up("n2")
    assert seen == [("down", "n1"), ("up", "n1"), ("up", "n2")]
    assert state.is_up("n1") is True


def test_a_failing_listener_does_not_keep_the_others_from_hearing():
    state = LinkState()
    seen = []

    def broken(peer):
        raise RuntimeError("bug")
    state.on_up(broken)
    state.on_up(seen.append)
    state.up("n1")
    assert seen == ["n1"]
    state.remove(seen.append)
    state.up("n1")
    assert seen == ["n1"]


class Listener:
    def __init__(self):
        self.events = []

    def legacy_opened(self, sock, dept, user):
        self.events.append(("open", sock, dept, user))

    def legacy_closed(self, sock):
        self.events.append(("close", sock))


def test_legacy_users_report_open_sockets_and_changes():
    users = LegacyUsers()
    users.opened("s1", "hr", "bob")            # before anyone listens
    listener = Listener()
    assert users.open_sockets() == [("s1", "hr", "bob")]
    users.listen(listener)
    users.opened("s2", "hr", "eve")
    users.opened("s2", "hr", "eve")            # reported twice: once
    users.closed("s1")
    users.closed("never-opened")
    assert listener.events == [("open", "s2", "hr", "eve"), ("close", "s1")]
    assert len(users) == 1
    users.listen(None)
    users.closed("s2")
    assert len(users) == 0 and len(listener.events) == 2
