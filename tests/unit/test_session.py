"""The client's WAMP session (``components.client.session``): a real Autobahn session, fed by a
stand-in transport the messages a node sends, accepts an EVENT that comes after the node's
GOODBYE quietly; Autobahn's own session takes it for a protocol error."""

import pytest
from autobahn.twisted.wamp import Session as AutobahnSession
from autobahn.wamp import message
from autobahn.wamp.exception import ProtocolError
from autobahn.wamp.types import ComponentConfig, TransportDetails

from components.client.tx import Session
from components.core import names


class Transport:
    """What a session asks of its transport: it sends, and is connected until closed."""

    class _serializer:
        SERIALIZER_ID = "json"

    transport_details = TransportDetails()

    def __init__(self):
        self.sent = []

    def send(self, msg):
        self.sent.append(msg)

    def isOpen(self):
        return True

    def close(self):
        pass


def _ended_session(cls):
    """A session of ``cls`` that joined, subscribed, and was then ended by the node."""
    session = cls(ComponentConfig(names.REALM))
    joined = []
    session.on("join", lambda s, details: joined.append(details))
    transport = Transport()
    session.onOpen(transport)
    assert isinstance(transport.sent[0], message.Hello)
    session.onMessage(message.Welcome.parse([message.Welcome.MESSAGE_TYPE, 7, {
        "roles": {"broker": {}, "dealer": {}}, "authid": "alice", "authrole": "member",
        "authextra": {"dept": "cardio"}}]))
    assert joined and session.is_attached()
    session.onMessage(message.Goodbye.parse([message.Goodbye.MESSAGE_TYPE, {}, "wamp.close.system_shutdown"]))
    assert not session.is_attached() and isinstance(transport.sent[-1], message.Goodbye)
    return session


#: as the node sends them, parsed from the wire
LATE = [message.Event.parse([message.Event.MESSAGE_TYPE, 1, 2, {}, [{"id": "1", "seq": 1}]]),
        message.Result.parse([message.Result.MESSAGE_TYPE, 5, {}, [{"exp": 1}]]),
        message.Goodbye.parse([message.Goodbye.MESSAGE_TYPE, {}, "deptcast.close.revoked"])]


@pytest.mark.parametrize("late", LATE, ids=lambda m: type(m).__name__)
def test_a_message_after_the_goodbye_is_dropped_quietly(late):
    session = _ended_session(Session)
    session.onMessage(late)      # Autobahn would raise here: a traceback and a failed connection
    assert session.late_messages == 1


def test_autobahns_own_session_takes_it_for_a_protocol_error():
    """What the subclass replaces (if Autobahn ever accepts it, the subclass can go)."""
    session = _ended_session(AutobahnSession)
    with pytest.raises(ProtocolError, match="session is not yet established"):
        session.onMessage(LATE[0])


def test_before_the_session_began_an_event_is_still_a_protocol_error():
    session = Session(ComponentConfig(names.REALM))
    session.onOpen(Transport())
    with pytest.raises(ProtocolError):
        session.onMessage(LATE[0])
    assert session.late_messages == 0
