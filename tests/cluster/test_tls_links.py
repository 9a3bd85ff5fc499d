"""A real 2-node cluster whose router links run over TLS (``deptcast cluster init --tls``):
certificates from the cluster's own CA, both ends checked; plain links and strangers refused.

The wrong-certificate test replaces a node's certificate and restarts it, so it runs last.
"""

import socket
import ssl

import pytest
import pytest_twisted
from twisted.internet import defer

from components.core.names import RLINK_ROLE
from components.ops import tls
from components.ops.meshconfig import RLINK_PATH
from tests.support import raw
from tests.support.cluster import running_cluster, wait_links_carry
from tests.support.legacy import HandshakeRefused, connect_legacy
from tests.support.nodes import token, wait_until
from tests.support.wamp import connect, connect_inspector, wait_for


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with running_cluster(tmp_path_factory.mktemp("tls-cluster"), "deptcast_tls", count=2, use_tls=True) as c:
        yield c


@defer.inlineCallbacks
def _link_sessions(node):
    """``(authid, transport)`` of every peer link session attached to ``node``."""
    inspector = yield connect_inspector(node.node_dir)
    try:
        ids = yield inspector.call("wamp.session.list", [RLINK_ROLE])
        out = []
        for sid in ids:
            info = yield inspector.call("wamp.session.get", sid)
            out.append((info["authid"], info.get("transport") or {}))
        return sorted(out, key=lambda x: x[0])
    finally:
        inspector.leave()


def test_init_makes_a_ca_and_one_certificate_per_node(cluster):
    out = cluster.layout.out
    assert (out / tls.CA_KEY).stat().st_mode & 0o777 == 0o600
    for node in cluster.nodes.values():
        assert (node.node_dir / tls.NODE_KEY).stat().st_mode & 0o777 == 0o600
        assert (node.node_dir / tls.NODE_CA).read_bytes() == (out / tls.CA_CERT).read_bytes()
        # the CA's key stays with the operator, never in a node directory
        assert not (node.node_dir / "tls" / "ca.key").exists()


@pytest_twisted.inlineCallbacks
def test_a_message_crosses_the_tls_links(cluster):
    n1, n2 = cluster.nodes["n1"], cluster.nodes["n2"]
    listener = yield connect(n1.url, token("tlsread", "tlsdept"))
    sender = yield connect(n2.url, token("tlssend", "tlsdept"))
    try:
        yield listener.listen("deptcast.dept.tlsdept")
        yield wait_links_carry(cluster, ["deptcast.dept.tlsdept"])
        envelope = yield sender.call("deptcast.send", "tlsdept", "over TLS")
        yield wait_for(lambda: listener.events["deptcast.dept.tlsdept"], what="the message on n1")
        yield sender.call("deptcast.send", "tlsdept", "marker")
        yield wait_for(lambda: "marker" in listener.messages("deptcast.dept.tlsdept"), what="the marker on n1")
        assert listener.events["deptcast.dept.tlsdept"][0] == envelope
        assert listener.messages("deptcast.dept.tlsdept") == ["over TLS", "marker"]
        # each node has the other's link session, and it came over TLS
        for node, peer in ((n1, "n2"), (n2, "n1")):
            sessions = yield _link_sessions(node)
            assert [authid for authid, _ in sessions] == [peer]
            assert sessions[0][1].get("is_secure") is True, sessions
    finally:
        yield listener.close()
        yield sender.close()


@pytest_twisted.inlineCallbacks
def test_the_web_port_serves_no_plain_links(cluster):
    n1 = cluster.nodes["n1"]
    with pytest.raises(HandshakeRefused) as info:
        yield connect_legacy(n1.port, "x", path=f"/{RLINK_PATH}")
    assert info.value.status == 404


def _tls_handshake(port: int, cert_key=None) -> bytes:
    """Connect to a link port with the cluster's CA as trust root and, if given, a client
    certificate; ask for a WebSocket; return what came back (b"" if the server closed)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # this test judges the server's side only
    if cert_key is not None:
        ctx.load_cert_chain(*cert_key)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as plain:
        with ctx.wrap_socket(plain) as sock:
            request = raw.http_head("GET", f"/{RLINK_PATH}", {
                "Host": f"127.0.0.1:{port}", "Upgrade": "websocket", "Connection": "Upgrade",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Protocol": "wamp.2.cbor"})
            try:
                sock.sendall(request)
                return sock.recv(4096)
            except (ssl.SSLError, ConnectionError) as e:
                return repr(e).encode()


def test_the_link_port_wants_a_certificate_of_the_cluster(cluster, tmp_path):
    n2 = cluster.nodes["n2"]
    port = cluster.layout.nodes[0].tls_port
    # a node's own certificate and key: the link port upgrades
    answer = _tls_handshake(port, (str(n2.node_dir / tls.NODE_CERT), str(n2.node_dir / tls.NODE_KEY)))
    assert answer.startswith(b"HTTP/1.1 101"), answer
    # no client certificate, or one from another CA: refused during TLS
    assert b"101" not in _tls_handshake(port)
    ca_key, ca_cert = tls.make_ca("stranger")
    key, cert = tls.make_node_certificate(ca_key, ca_cert, "n2", "127.0.0.1")
    (tmp_path / "k.pem").write_bytes(key)
    (tmp_path / "c.pem").write_bytes(cert)
    answer = _tls_handshake(port, (str(tmp_path / "c.pem"), str(tmp_path / "k.pem")))
    assert b"101" not in answer and b"SSL" in answer, answer


@pytest_twisted.inlineCallbacks
def test_a_node_with_a_certificate_from_another_ca_is_refused(cluster):
    n1, n2 = cluster.nodes["n1"], cluster.nodes["n2"]
    ca_key, ca_cert = tls.make_ca("rogue")
    key, cert = tls.make_node_certificate(ca_key, ca_cert, "n2", "127.0.0.1")
    n2.stop()
    (n2.node_dir / tls.NODE_KEY).write_bytes(key)
    (n2.node_dir / tls.NODE_CERT).write_bytes(cert)
    before = len(n1.log_text())
    # started, not serving: with no link up it holds sends for DEPTCAST_LINK_WAIT (30 s)
    n2.start(until="started")
    # n1 refuses n2's certificate both as the link's server and as its client ...
    wait_until(lambda: n1.log_text()[before:].count("SSL error: certificate verify failed") >= 2, 60,
               "n1 to refuse n2's certificate")
    # ... and n2 hears that its certificate's CA is unknown
    wait_until(lambda: "alert unknown ca" in n2.log_since_start(), 60, "n2 to be refused")
    for node in (n1, n2):
        sessions = yield _link_sessions(node)
        assert sessions == [], (node.name, sessions)
