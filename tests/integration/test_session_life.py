"""A session lives no longer than its right to listen, on a real node: expiry at the token's
``exp`` (WAMP GOODBYE ``deptcast.close.token_expired``, legacy close 4001), refresh with a newer
token, and revocation (GOODBYE ``deptcast.close.revoked``, legacy close 4003, older tokens
refused on WAMP, the legacy handshake and HTTP).

One node for the module, in compatibility mode (``DEPTCAST_LEGACY_OPEN=1``), so that open-mode
sockets can be revoked too; every test uses a department of its own.
"""

import json
import os
import time

import jwt
import pytest
import pytest_twisted
from autobahn.twisted.websocket import WampWebSocketClientFactory
from autobahn.wamp import message
from autobahn.wamp.types import ComponentConfig
from autobahn.websocket.util import parse_url
from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint

from components.core import names
from components.core.tokens import issue_token
from tests.support.legacy import HandshakeRefused, connect_legacy, http_request, post_send
from tests.support.nodes import TEST_SECRET, Node, token
from tests.support.wamp import Client, JoinRefused, call_error, connect, wait_for

INVALID_TOKEN = "deptcast.error.invalid_token"
TOKEN_EXPIRED = "deptcast.error.token_expired"
NOT_AUTHORIZED = "deptcast.error.not_authorized"


def _dept(prefix: str) -> str:
    return f"{prefix}-{os.urandom(3).hex()}"


def _sleep(seconds: float):
    return task.deferLater(reactor, seconds, lambda: None)


@pytest.fixture(scope="module")
def life_node(tmp_path_factory):
    n = Node(tmp_path_factory.mktemp("life"), name="life", env={"DEPTCAST_LEGACY_OPEN": "1"})
    n.start()
    yield n
    n.stop()


def post_revoke(port: int, body, tok=None):
    headers = {"Content-Type": "application/json"}
    if tok is not None:
        headers["Authorization"] = f"Bearer {tok}"
    d = http_request("POST", f"http://127.0.0.1:{port}/api/revoke", json.dumps(body).encode(), headers)
    return d.addCallback(lambda r: (r[0], json.loads(r[2])))


# -- expiry


@pytest_twisted.inlineCallbacks
def test_a_wamp_session_and_a_legacy_socket_end_at_their_tokens_exp(life_node):
    dept = _dept("exp")
    session = yield connect(life_node.url, token("eve", dept, ttl=3))
    yield session.listen(names.dept_topic(dept))
    legacy = yield connect_legacy(life_node.port, f"{dept}_leo", token("leo", dept, ttl=3))
    # an open-mode socket (no token) has no expiry
    open_socket = yield connect_legacy(life_node.port, f"{dept}_olga")
    yield wait_for(lambda: session.closed.called and legacy.closed.called, 20, "both to end")
    assert session.left_with.reason == names.CLOSE_TOKEN_EXPIRED
    assert legacy.close_info[1] == 4001 and legacy.close_info[2] == names.CLOSE_TOKEN_EXPIRED
    # a notice sent now reaches the open socket, which is still there
    sender = yield connect(life_node.url, token("pat", dept, "publisher"))
    yield sender.call(names.PROC_SEND, dept, "after exp")
    yield wait_for(lambda: open_socket.messages() == ["after exp"], 15, "the open socket to get it")
    assert open_socket.open_now and session.events[names.dept_topic(dept)] == []
    yield sender.close()
    yield open_socket.close()


# -- refresh


@pytest_twisted.inlineCallbacks
def test_refresh_with_a_newer_token_keeps_the_session_past_the_first_exp(life_node):
    dept = _dept("ref")
    session = yield connect(life_node.url, token("rae", dept, ttl=3))
    yield session.listen(names.dept_topic(dept))
    fresh = issue_token(TEST_SECRET, "rae", dept, "member", 60)
    answer = yield session.call(names.PROC_SESSION_REFRESH, fresh)
    assert answer == {"exp": jwt.decode(fresh, options={"verify_signature": False})["exp"]}
    yield _sleep(4.5)   # past the first token's exp
    assert not session.closed.called
    sender = yield connect(life_node.url, token("pat", dept, "publisher"))
    yield sender.call(names.PROC_SEND, dept, "still here")
    yield wait_for(lambda: session.messages(names.dept_topic(dept)) == ["still here"], 15, "the notice")
    yield sender.close()
    yield session.close()


@pytest_twisted.inlineCallbacks
def test_refresh_with_another_identity_is_refused_and_the_session_is_unchanged(life_node):
    dept = _dept("wrong")
    session = yield connect(life_node.url, token("wes", dept, ttl=4))
    wrong = {
        "another user": issue_token(TEST_SECRET, "wendy", dept, "member", 60),
        "another department": issue_token(TEST_SECRET, "wes", dept + "x", "member", 60),
        "another role": issue_token(TEST_SECRET, "wes", dept, "publisher", 60),
    }
    for what, tok in wrong.items():
        e = yield call_error(session.call(names.PROC_SESSION_REFRESH, tok))
        assert e.error == NOT_AUTHORIZED, what
    e = yield call_error(session.call(names.PROC_SESSION_REFRESH, "not a token"))
    assert e.error == INVALID_TOKEN
    expired = issue_token(TEST_SECRET, "wes", dept, "member", 1, now=time.time() - 10)
    e = yield call_error(session.call(names.PROC_SESSION_REFRESH, expired))
    assert e.error == TOKEN_EXPIRED
    # not newer: the same exp as the session's (or earlier)
    same = issue_token(TEST_SECRET, "wes", dept, "member", 1)
    e = yield call_error(session.call(names.PROC_SESSION_REFRESH, same))
    assert e.error == NOT_AUTHORIZED
    # unchanged: it still ends at its own token's exp
    yield wait_for(lambda: session.closed.called, 20, "the session to end at its exp")
    assert session.left_with.reason == names.CLOSE_TOKEN_EXPIRED


# -- revocation


@pytest_twisted.inlineCallbacks
def test_revoke_ends_the_users_sessions_and_refuses_its_older_tokens(life_node):
    dept = _dept("rev")
    old = token("rex", dept)
    wamp = yield connect(life_node.url, old)
    legacy = yield connect_legacy(life_node.port, f"{dept}_rex", old)
    open_socket = yield connect_legacy(life_node.port, f"{dept}_rex")
    bystander = yield connect(life_node.url, token("ben", dept))
    # only admins may revoke: the router refuses the others
    e = yield call_error(bystander.call(names.PROC_ADMIN_REVOKE, f"{dept}_rex"))
    assert e.error == "wamp.error.not_authorized"
    admin = yield connect(life_node.url, token("ops", "ops", "admin"))
    e = yield call_error(admin.call(names.PROC_ADMIN_REVOKE, "not a key"))
    assert e.error == "deptcast.error.invalid_frame"
    answer = yield admin.call(names.PROC_ADMIN_REVOKE, f"{dept}_rex")
    assert answer["user_key"] == f"{dept}_rex" and isinstance(answer["at"], int)
    yield wait_for(lambda: wamp.closed.called and legacy.closed.called and open_socket.closed.called, 15,
                   "the user's sessions to end")
    assert wamp.left_with.reason == names.CLOSE_REVOKED
    assert legacy.close_info[1] == 4003 and open_socket.close_info[1] == 4003
    assert not bystander.closed.called
    # its tokens issued until the revocation's second are refused: WAMP, legacy, HTTP
    with pytest.raises(JoinRefused) as refused:
        yield connect(life_node.url, old)
    assert refused.value.reason == INVALID_TOKEN and "revoked" in refused.value.message
    no_iat = jwt.encode({"sub": "rex", "dept": dept, "exp": int(time.time()) + 600}, TEST_SECRET, algorithm="HS256")
    with pytest.raises(JoinRefused) as refused:
        yield connect(life_node.url, no_iat)
    assert refused.value.reason == INVALID_TOKEN and "revoked" in refused.value.message
    with pytest.raises(HandshakeRefused) as handshake:
        yield connect_legacy(life_node.port, f"{dept}_rex", old)
    assert handshake.value.status == 401
    status, _, body = yield post_send(life_node.port, {"to": dept, "message": "x"}, token=old)
    assert status == 401 and body["error"] == INVALID_TOKEN and "revoked" in body["detail"]
    # a token issued after the revocation signs in
    later = issue_token(TEST_SECRET, "rex", dept, "member", 600, now=answer["at"] + 1)
    back = yield connect(life_node.url, later)
    assert not back.closed.called
    for s in (back, bystander, admin):
        yield s.close()


@pytest_twisted.inlineCallbacks
def test_post_api_revoke_takes_an_admin_token(life_node):
    dept = _dept("http")
    victim = yield connect(life_node.url, token("hal", dept))
    status, body = yield post_revoke(life_node.port, {"user_key": f"{dept}_hal"}, token("hal", dept, "publisher"))
    assert (status, body["error"]) == (403, NOT_AUTHORIZED)
    status, body = yield post_revoke(life_node.port, {"user_key": f"{dept}_hal"})
    assert (status, body["error"]) == (401, INVALID_TOKEN)
    admin = token("hr-system", "ops", "admin")
    status, body = yield post_revoke(life_node.port, {"user": "x"}, admin)
    assert (status, body["error"]) == (400, "deptcast.error.invalid_frame")
    assert not victim.closed.called
    status, body = yield post_revoke(life_node.port, {"user_key": f"{dept}_hal"}, admin)
    assert status == 200 and body["user_key"] == f"{dept}_hal"
    yield wait_for(lambda: victim.closed.called, 15, "the session to end")
    assert victim.left_with.reason == names.CLOSE_REVOKED
    status, _, metrics = yield http_request("GET", f"http://127.0.0.1:{life_node.port}/metrics")
    ended = [line for line in metrics.decode().splitlines()
             if line.startswith('deptcast_sessions_ended_total{reason="revoked"}')]
    assert status == 200 and len(ended) == 1 and float(ended[0].split()[-1]) >= 1


class _Deaf(Client):
    """A client that never answers a GOODBYE (it keeps its connection open)."""

    goodbye = None

    def onMessage(self, msg):
        if isinstance(msg, message.Goodbye):
            self.goodbye = msg
            return
        super().onMessage(msg)


def _connect_deaf(url: str, tok: str):
    joined = defer.Deferred()
    factory = WampWebSocketClientFactory(lambda: _Deaf(ComponentConfig(realm=names.REALM), tok, None, joined),
                                         url=url)
    _, host, port, _, _, _ = parse_url(url)
    TCP4ClientEndpoint(reactor, host, port).connect(factory).addErrback(joined.errback)
    return joined.addTimeout(10, reactor)


@pytest_twisted.inlineCallbacks
def test_a_client_that_ignores_its_goodbye_is_cut_off(life_node):
    dept = _dept("deaf")
    deaf = yield _connect_deaf(life_node.url, token("dan", dept))
    yield deaf.listen(names.dept_topic(dept))
    admin = yield connect(life_node.url, token("ops", "ops", "admin"))
    yield admin.call(names.PROC_ADMIN_REVOKE, f"{dept}_dan")
    yield wait_for(lambda: deaf.closed.called, 20, "the node to cut the connection")
    assert deaf.goodbye is not None and deaf.goodbye.reason == names.CLOSE_REVOKED
    yield admin.close()
