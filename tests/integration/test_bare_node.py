"""A node whose config mounts none of deptcast's own web resources (no ``/webSocket``,
``/dev/token``, ``/api/send``) still has every guard: the upstream patches are installed by the
node's composition root, not by the resources. Two real nodes, one with the full config and
one without those paths, are refused the same way."""

import json
import socket
import struct
import time
from typing import Optional, Tuple

import pytest

from components import upstream
from components.ops.nodeconfig import node_config
from tests.support import raw
from tests.support.nodes import REPO, Node, started

#: the paths the trap depended on: each of their resources used to install the guards
RESOURCES = ("webSocket", "dev", "api")
#: a HELLO whose details nest past the WAMP JSON bound (64) but are harmless to parse: without
#: the guard the router would take it and ask for the ticket
DEEP_HELLO = (b'[1, "deptcast", {"roles": {"subscriber": {}}, "authmethods": ["ticket"], "authextra": {"x": '
              + b"[" * 100 + b"]" * 100 + b"}}]")
#: the attacker's HELLO: deeper than json.loads survives under Crossbar's recursion limit
ATTACK_HELLO = b'[1, "deptcast", {"authextra": {"x": ' + b"[" * 120_000 + b"]" * 120_000 + b"}}]"
#: as deep as fits under the size bound before authentication (64 KiB): the depth guard answers it
DEEPEST_SMALL_HELLO = b'[1, "deptcast", {"authextra": {"x": ' + b"[" * 30_000 + b"]" * 30_000 + b"}}]"


def bare_config(port: int) -> dict:
    config = node_config(port=port, root=REPO, interface="127.0.0.1")
    paths = config["workers"][0]["transports"][0]["paths"]
    for path in RESOURCES:
        del paths[path]
    return config


@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    with started(Node(tmp_path_factory.mktemp("full"), name="full"),
                 Node(tmp_path_factory.mktemp("bare"), config=bare_config, name="bare")) as both:
        yield both


def close_frame(sock: socket.socket, timeout: float) -> Optional[Tuple[int, str]]:
    """The server's close frame (code, reason) once it comes; ``None`` if the connection is
    still open after ``timeout`` seconds or closes without one. Other frames are skipped."""
    sock.settimeout(timeout)
    end, buf = time.monotonic() + timeout, b""
    try:
        while time.monotonic() < end:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            buf += chunk
            while len(buf) >= 2:
                opcode, length, at = buf[0] & 0x0F, buf[1] & 0x7F, 2
                if length == 126:
                    if len(buf) < 4:
                        break
                    length, at = struct.unpack("!H", buf[2:4])[0], 4
                elif length == 127:
                    if len(buf) < 10:
                        break
                    length, at = struct.unpack("!Q", buf[2:10])[0], 10
                if len(buf) < at + length:
                    break
                payload, buf = buf[at:at + length], buf[at + length:]
                if opcode == 0x8:
                    return struct.unpack("!H", payload[:2])[0], payload[2:].decode("utf-8")
    except (socket.timeout, ConnectionError):
        return None
    return None


def refusal_of(node: Node, hello: bytes) -> Optional[Tuple[int, str]]:
    """What the node answers a HELLO on ``/ws`` (WAMP JSON) with: its close frame, within 10 s."""
    sock, _ = raw.websocket_upgrade(node.port, "/ws", ["wamp.2.json"])
    try:
        raw.send_frame(sock, hello)
        return close_frame(sock, 10)
    finally:
        sock.close()


def test_the_bare_node_has_none_of_those_resources(nodes):
    _, bare = nodes
    for path in ("/webSocket/cardio_alice", "/dev/token", "/api/send"):
        status, _ = raw.http(bare.port, "GET", path)
        assert status == 404, path


@pytest.mark.parametrize("hello, too_large", [(DEEP_HELLO, False), (DEEPEST_SMALL_HELLO, False), (ATTACK_HELLO, True)],
                         ids=["100 levels", "30,000 levels", "120,000 levels"])
def test_a_too_deep_json_hello_is_refused_on_ws_exactly_as_on_a_full_node(nodes, hello, too_large):
    full, bare = nodes
    started = time.monotonic()
    answers = [refusal_of(node, hello) for node in (full, bare)]
    assert answers[0] == answers[1]
    code, reason = answers[1]
    if too_large:
        # over the size bound before authentication: closed as its length is read, never parsed
        assert code == 1009
    else:
        assert code == 1002 and reason.startswith("WAMP Protocol Error (") and "nests" in reason
    assert time.monotonic() - started < 10  # at once, not after seconds of CPU
    for node in (full, bare):
        assert "RecursionError" not in node.log_text()


def test_a_body_over_the_cap_is_refused_before_it_is_read_on_both(nodes):
    for node in nodes:
        sock = raw.connect(node.port)
        try:
            sock.sendall(raw.http_head("POST", "/health", {"Host": f"127.0.0.1:{node.port}",
                                                           "Content-Length": str(3 * 1024 ** 3)}))
            assert raw.status_of(raw.read_response_head(sock, 10)) == 413, node.name
        finally:
            sock.close()


def test_health_lists_every_patch_applied_on_both(nodes):
    for node in nodes:
        status, body = raw.http(node.port, "GET", "/health")
        assert status == 200, body
        patches = json.loads(body)["patches"]
        assert patches == [{"name": name, "state": "applied"} for name in upstream.PATCHES], node.name
