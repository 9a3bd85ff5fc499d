"""Unit tests of components.core.presence: the book of who is online across nodes."""

import pytest

from components.core.errors import Refused
from components.core.presence import Change, PresenceBook, check_dept, forget_peer_on, online_answer, parse_internal


def test_local_sessions_count_a_user_once():
    book = PresenceBook("n1")
    assert book.join(1, "cardio", "alice") == [Change("cardio", "alice", True, 1)]
    assert book.join(2, "cardio", "alice") == []          # a second session: still one user
    assert book.join(2, "cardio", "alice") == []          # the same session twice: no-op
    assert book.join(3, "cardio", "bob") == [Change("cardio", "bob", True, 2)]
    assert book.join(4, "neuro", "carol") == [Change("neuro", "carol", True, 1)]
    assert book.online("cardio") == ["alice", "bob"] and book.count("cardio") == 2
    assert book.local_sessions("cardio", "alice") == 2
    assert book.leave(1) == []                             # alice keeps session 2
    assert book.online("cardio") == ["alice", "bob"]
    assert book.leave(2) == [Change("cardio", "alice", False, 1)]
    assert book.leave(2) == [] and book.leave(99) == []    # unknown sessions are ignored
    assert book.online("cardio") == ["bob"]
    assert book.online("nobody") == [] and book.count("nobody") == 0
    assert book.snapshot() == [["cardio", "bob", 1], ["neuro", "carol", 1]]
    assert online_answer(book, "cardio") == {"dept": "cardio", "count": 1, "users": ["bob"]}


def test_users_on_several_nodes():
    book = PresenceBook("n1")
    book.join(1, "cardio", "alice")
    # alice on n2 as well: no change; dave only on n2: online
    assert book.set_remote("n2", "cardio", "alice", 2) == []
    assert book.set_remote("n2", "cardio", "dave", 1) == [Change("cardio", "dave", True, 2)]
    assert book.set_remote("n3", "cardio", "erin", 1) == [Change("cardio", "erin", True, 3)]
    assert book.online("cardio") == ["alice", "dave", "erin"]
    # alice leaves n1 but is still on n2
    assert book.leave(1) == []
    assert book.online("cardio") == ["alice", "dave", "erin"]
    assert book.set_remote("n2", "cardio", "alice", 0) == [Change("cardio", "alice", False, 2)]
    # a peer cannot overwrite this node's own sessions
    assert book.set_remote("n1", "cardio", "zed", 1) == []
    assert book.nodes() == ["n2", "n3"]


def test_replace_a_snapshot_and_drop_a_node():
    book = PresenceBook("n1")
    book.join(1, "cardio", "alice")
    book.set_remote("n2", "cardio", "alice", 1)
    book.set_remote("n2", "cardio", "bob", 1)
    book.set_remote("n2", "neuro", "carol", 3)
    # the new snapshot has bob (2 sessions) and frank; carol is gone
    changes = book.replace("n2", [["cardio", "bob", 2], ["cardio", "frank", 1]])
    assert changes == [Change("neuro", "carol", False, 0), Change("cardio", "frank", True, 3)]
    assert book.snapshot("n2") == [["cardio", "bob", 2], ["cardio", "frank", 1]]
    assert book.online("cardio") == ["alice", "bob", "frank"] and book.online("neuro") == []
    # the same snapshot again changes nothing
    assert book.replace("n2", [["cardio", "bob", 2], ["cardio", "frank", 1]]) == []
    # n2 goes away: its users go offline, except alice who is on n1 too
    changes = book.drop("n2")
    assert changes == [Change("cardio", "bob", False, 2), Change("cardio", "frank", False, 1)]
    assert book.online("cardio") == ["alice"]
    assert book.drop("n2") == [] and book.drop("n9") == []
    assert book.replace("n1", []) == []  # this node's own sessions are not a peer's snapshot
    assert book.online("cardio") == ["alice"]


def test_change_event_payload():
    assert Change("cardio", "alice", True, 3).event() == {"dept": "cardio", "user": "alice",
                                                          "online": True, "count": 3}


def test_check_dept():
    assert check_dept("cardio") == "cardio"
    for bad in (None, "", "a_b", "x" * 65, 7, ["cardio"]):
        with pytest.raises(Refused) as e:
            check_dept(bad)
        assert e.value.uri == "deptcast.error.invalid_frame"


def test_parse_internal_takes_only_peer_messages_for_this_node():
    peers = ["n2", "n3"]
    delta = {"kind": "delta", "from": "n2", "dept": "cardio", "user": "alice", "sessions": 2}
    assert parse_internal(delta, "n1", peers) == delta
    assert parse_internal({**delta, "from": "n9"}, "n1", peers) is None        # not a peer
    assert parse_internal({**delta, "from": "n1"}, "n1", ["n1"]) is None       # own message
    assert parse_internal({**delta, "sessions": -1}, "n1", peers) is None
    assert parse_internal({**delta, "sessions": True}, "n1", peers) is None
    assert parse_internal({**delta, "user": "a_b"}, "n1", peers) is None
    request = {"kind": "request", "from": "n3", "to": "n1"}
    assert parse_internal(request, "n1", peers) == request
    assert parse_internal({**request, "to": "n2"}, "n1", peers) is None        # someone else's
    snap = {"kind": "snapshot", "from": "n2", "to": "n1",
            "entries": [["cardio", "alice", 1], ["bad_dept", "x", 1], ["cardio", "bob", 0], "junk"]}
    assert parse_internal(snap, "n1", peers)["entries"] == [["cardio", "alice", 1]]
    assert parse_internal({**snap, "entries": None}, "n1", peers) is None
    assert parse_internal({**snap, "to": "n3"}, "n1", peers) is None
    for junk in (None, "x", [], {"kind": "other", "from": "n2"}):
        assert parse_internal(junk, "n1", peers) is None
    deltas = {"kind": "deltas", "from": "n2",
              "entries": [["cardio", "alice", 1], ["bad_dept", "x", 1], ["cardio", "bob", 0], ["hr", "c", -1],
                          ["hr", "d", True], "junk"]}
    assert parse_internal(deltas, "n1", peers)["entries"] == [["cardio", "alice", 1], ["cardio", "bob", 0]]
    assert parse_internal({**deltas, "entries": None}, "n1", peers) is None
    assert parse_internal({**deltas, "from": "n9"}, "n1", peers) is None


def test_legacy_sockets_count_like_sessions_per_user():
    """A legacy socket is one more session of its key's user: events on the first and the
    last connection of the user across both kinds, none in between."""
    book = PresenceBook("n1")
    page, other_page = object(), object()
    assert book.join(page, "cardio", "alice") == [Change("cardio", "alice", True, 1)]
    assert book.join(17, "cardio", "alice") == []           # her WAMP session as well
    assert book.join(other_page, "cardio", "alice") == []   # a second old page
    assert book.local_sessions("cardio", "alice") == 3
    assert book.leave(page) == [] and book.leave(17) == []
    assert book.key_of(other_page) == ("cardio", "alice")
    assert book.leave(other_page) == [Change("cardio", "alice", False, 0)]
    assert book.leave(page) == []


def test_a_peers_users_are_forgotten_only_once_neither_link_is_there():
    # the peer's link session is still here: its link to us is up, it is running
    assert forget_peer_on(True, False) is False and forget_peer_on(True, None) is False
    # its link here left, but ours to it is up: its deltas still arrive (a blip of its link)
    assert forget_peer_on(False, True) is False
    # neither: the peer stopped (or is cut off)
    assert forget_peer_on(False, False) is True
    # nothing watches our links: a leaving link session means the peer stopped
    assert forget_peer_on(False, None) is True
