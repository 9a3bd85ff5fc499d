"""Admission before authentication on a real node: with ``DEPTCAST_MAX_AUTHENTICATING`` of
:data:`BOUND`, the upgrades that come while that many connections are between their upgrade
and their WELCOME are answered 503 with a ``Retry-After``, at once and without an upgrade;
counted in ``/metrics``; and every client gets in once it comes back after the others.

Every test speaks HTTP and WAMP by hand (:mod:`tests.support.raw`, :mod:`tests.support.rawwamp`):
it sees the answers exactly as the node sent them.
"""

import base64
import os
import re
import socket
import time
from typing import List, Optional, Tuple

import pytest

from tests.support import raw
from tests.support.metrics import metric
from tests.support.nodes import Node, token
from tests.support.rawwamp import RawWamp

BOUND = 3
AUTH_TIMEOUT = 60


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    n = Node(tmp_path_factory.mktemp("admission"), name="admission",
             env={"DEPTCAST_MAX_AUTHENTICATING": str(BOUND), "DEPTCAST_AUTH_TIMEOUT": str(AUTH_TIMEOUT),
                  "DEPTCAST_RATE": "0"})
    n.start()
    yield n
    n.stop()


def upgrade(port: int) -> Tuple[socket.socket, Optional[bytes]]:
    """Ask ``/ws`` for an upgrade; the socket and the node's answer (its head)."""
    sock = raw.connect(port)
    headers = {"Host": f"127.0.0.1:{port}", "Upgrade": "websocket", "Connection": "Upgrade",
               "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(), "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Protocol": "wamp.2.json"}
    sock.sendall(raw.http_head("GET", "/ws", headers))
    return sock, raw.read_response_head(sock, 10.0)


def refused(head: Optional[bytes]) -> Optional[int]:
    """The ``Retry-After`` of a 503 answer; ``None`` for any other answer."""
    if raw.status_of(head) != 503:
        return None
    found = re.search(rb"(?im)^retry-after:\s*(\d+)\s*$", head or b"")
    assert found, head
    return int(found.group(1))


def closed_by_node(sock: socket.socket) -> bool:
    """Whether the node closed the connection after its answer (reads to the end)."""
    sock.settimeout(10.0)
    try:
        while sock.recv(65536):
            pass
    except ConnectionError:
        pass
    return True


def settled(node, count: int = 0, timeout: float = 20.0) -> None:
    """Wait until the node counts ``count`` connections authenticating (a close is read by the
    node when it comes, not when the test's socket closes)."""
    end = time.monotonic() + timeout
    while metric(node, "deptcast_connections_authenticating") != count:
        assert time.monotonic() < end, f"the node still counts {metric(node, 'deptcast_connections_authenticating')}"
        time.sleep(0.05)


def waiting(node, count: int) -> List[socket.socket]:
    """``count`` connections upgraded that do not say HELLO (authenticating, as far as the
    node knows)."""
    return [raw.websocket_upgrade(node.port, "/ws", ["wamp.2.json"])[0] for _ in range(count)]


def test_upgrades_past_the_bound_are_answered_503_with_a_retry_after_and_closed(node):
    settled(node)
    before = metric(node, "deptcast_connections_refused_busy_total")
    held = waiting(node, BOUND)
    try:
        assert metric(node, "deptcast_connections_authenticating") == BOUND
        answers = [upgrade(node.port) for _ in range(4)]
        hints = [refused(head) for _, head in answers]
        assert all(h is not None and 1 <= h <= 60 for h in hints), hints
        assert all(closed_by_node(sock) for sock, _ in answers)
        assert metric(node, "deptcast_connections_refused_busy_total") == before + 4
        # the legacy endpoint and plain HTTP are not bound by it
        status, _ = raw.http(node.port, "GET", "/health/serving")
        assert status == 200
    finally:
        for sock in held:
            sock.close()


def test_a_connection_that_leaves_or_joins_makes_room(node):
    settled(node)
    held = waiting(node, BOUND - 1)
    joining = RawWamp(node.port)  # upgraded: authenticating until its WELCOME
    try:
        sock, head = upgrade(node.port)
        assert refused(head) is not None
        sock.close()
        # one leaves without a word: once the node has read its close, its place is free
        held.pop().close()
        settled(node, BOUND - 1)
        taken, head = upgrade(node.port)
        assert raw.status_of(head) == 101
        held.append(taken)
        sock, head = upgrade(node.port)
        assert refused(head) is not None
        sock.close()
        # one that joins frees its place at its WELCOME
        assert joining.join(token("admitted1", "ops"))[0] == 2
        assert metric(node, "deptcast_connections_authenticating") == BOUND - 1
        taken, head = upgrade(node.port)
        assert raw.status_of(head) == 101
        held.append(taken)
    finally:
        for sock in held:
            sock.close()
        joining.close()


def test_every_client_gets_in_after_backing_off(node):
    """Ten clients come while the bound is full: all ten are refused; once the place frees,
    each that comes back (a client waits its Retry-After; here it comes back at once, which
    only makes it likelier to be refused again) is either admitted and joins, or refused
    again and comes back: in the end all ten joined, and the refusals counted are the
    refusals the clients saw."""
    settled(node)
    before = metric(node, "deptcast_connections_refused_busy_total")
    held = waiting(node, BOUND)
    users = [f"storm{k}" for k in range(10)]
    seen = 0
    try:
        for _ in users:
            sock, head = upgrade(node.port)
            assert refused(head) is not None
            sock.close()
            seen += 1
    finally:
        for sock in held:
            sock.close()
    settled(node)
    joined = {}
    pending = list(users)
    rounds = 0
    while pending and rounds < 200:
        rounds += 1
        user = pending.pop(0)
        try:
            client = RawWamp(node.port)
        except AssertionError as e:  # answered 503: back to the end of the line
            assert " 503 " in str(e), e
            seen += 1
            pending.append(user)
            continue
        welcome = client.join(token(user, "ops"))
        joined[user] = welcome[0]
        client.close()
    assert joined == {u: 2 for u in users}
    assert metric(node, "deptcast_connections_refused_busy_total") == before + seen
