"""Unit tests of the generated hardening settings: WebSocket caps, TLS link certificates and
configs, the balancer's limits and ``/dev/`` block, link ports in node descriptions."""

import ipaddress

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from components.core.frames import frame_cap, wamp_message_cap
from components.ops import tls
from components.ops.cluster import init_cluster
from components.ops.meshconfig import cluster_node_config
from components.ops.nginx import nginx_config
from components.ops.nodeconfig import node_config
from components.ops.topology import NodeSpec, check_cluster, parse_node_spec

DB = "postgresql://deptcast@db.example/deptcast"


def test_wamp_cap_fits_the_largest_message_in_any_serializer():
    assert wamp_message_cap(65536) == 6 * 65536 + 64 * 1024
    assert wamp_message_cap(65536) > frame_cap(65536)
    ws = node_config()["workers"][0]["transports"][0]["paths"]["ws"]["options"]
    assert ws["max_message_size"] == ws["max_frame_size"] == wamp_message_cap(65536)


def test_a_larger_message_limit_sizes_the_caps_and_sets_the_setting():
    config = node_config(max_message_bytes=1_000_000)
    router = config["workers"][0]
    assert router["transports"][0]["paths"]["ws"]["options"]["max_message_size"] == wamp_message_cap(1_000_000)
    assert router["options"]["env"]["vars"]["DEPTCAST_MAX_MESSAGE_BYTES"] == "1000000"
    assert "env" not in node_config()["workers"][0]["options"]


def test_node_specs_may_name_a_link_port():
    assert parse_node_spec("n1=10.0.0.1:8080/8443") == NodeSpec("n1", "10.0.0.1", 8080, 8443)
    assert parse_node_spec("n1=10.0.0.1:8080").tls_port == 8081
    assert parse_node_spec("n1=[::1]:8080/9000").tls_port == 9000
    for bad in ["n1=h:8080/", "n1=h:8080/x", "n1=h:8080/0", "n1=h:8080/70000"]:
        with pytest.raises(ValueError):
            parse_node_spec(bad)
    clash = [NodeSpec("n1", "h", 8080), NodeSpec("n2", "h", 8081)]  # n1's link port is n2's web port
    check_cluster(clash, DB)
    with pytest.raises(ValueError, match="link port"):
        check_cluster(clash, DB, use_tls=True)


def test_tls_links_use_their_own_port_and_check_both_ends():
    nodes = [NodeSpec("n1", "10.0.0.1", 8080, 8443), NodeSpec("n2", "node2.example", 8080, 8443)]
    config = cluster_node_config(nodes[0], nodes, {"n1": "aa", "n2": "bb"}, DB, use_tls=True)
    router = config["workers"][0]
    web, links = router["transports"][:2]
    assert "rlink" not in web["paths"]
    assert links["type"] == "websocket" and links["endpoint"]["port"] == 8443
    assert links["endpoint"]["tls"] == {"key": "tls/node.key", "certificate": "tls/node.pem",
                                        "ca_certificates": ["tls/ca.pem"]}
    assert set(links["auth"]["cryptosign"]["principals"]) == {"n2"}
    [link] = router["realms"][0]["rlinks"]
    assert link["transport"]["url"] == "wss://node2.example:8443/rlink"
    assert link["transport"]["endpoint"]["tls"]["hostname"] == "node2.example"
    assert link["transport"]["endpoint"]["tls"]["certificate"] == "tls/node.pem"


def test_node_certificates_chain_to_the_ca_and_name_their_host():
    ca_key, ca_pem = tls.make_ca()
    ca = x509.load_pem_x509_certificate(ca_pem)
    for host, kind in (("10.0.0.1", x509.IPAddress), ("node1.example", x509.DNSName)):
        _, pem = tls.make_node_certificate(ca_key, ca_pem, "n1", host)
        cert = x509.load_pem_x509_certificate(pem)
        cert.verify_directly_issued_by(ca)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(kind)
        assert names == [ipaddress.ip_address(host) if kind is x509.IPAddress else host]
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
        assert 0 < cert.serial_number < 2 ** 63


def test_init_keeps_certificates_and_needs_the_ca_key_only_for_missing_ones(tmp_path):
    nodes = [NodeSpec("n1", "127.0.0.1", 8080, 8443), NodeSpec("n2", "127.0.0.1", 8090, 8444)]
    init_cluster(nodes, DB, tmp_path, use_tls=True)
    before = (tmp_path / "n1" / tls.NODE_CERT).read_bytes()
    init_cluster(nodes, DB, tmp_path, use_tls=True)
    assert (tmp_path / "n1" / tls.NODE_CERT).read_bytes() == before
    # the operator keeps the CA key elsewhere: existing certificates still do ...
    (tmp_path / tls.CA_KEY).rename(tmp_path / "ca.key.offline")
    init_cluster(nodes, DB, tmp_path, use_tls=True)
    # ... a new node's cannot be made
    with pytest.raises(ValueError, match="CA key"):
        init_cluster(nodes + [NodeSpec("n3", "127.0.0.1", 8100, 8445)], DB, tmp_path, use_tls=True)


def test_the_production_balancer_limits_and_keeps_dev_out():
    nodes = [NodeSpec("n1", "10.0.0.1", 8080), NodeSpec("n2", "10.0.0.2", 8080)]
    text = nginx_config(nodes, conn_per_ip=7, rate_per_ip=9, burst=11)
    assert "limit_conn_zone $binary_remote_addr zone=deptcast_conn:10m;" in text
    assert "limit_req_zone $binary_remote_addr zone=deptcast_req:10m rate=9r/s;" in text
    assert "limit_conn deptcast_conn 7;" in text and "limit_req zone=deptcast_req burst=11 nodelay;" in text
    assert "location /dev/ {\n            return 404;" in text
    assert text.count("proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;") == 3
    demo = nginx_config(nodes, dev=True)
    dev_block = demo[demo.index("location /dev/"):]
    assert "deny all;" in dev_block[:dev_block.index("}")]
    assert "X-Forwarded-For" not in dev_block[:dev_block.index("}")]


def _legacy_warnings(monkeypatch, max_message_bytes, extra):
    from twisted.internet import task

    from components.edge.legacy import LegacyResource
    from components.service.runtime import Runtime
    from tests.support.fakes import RecordingLog, make_settings

    log = RecordingLog()
    monkeypatch.setattr(LegacyResource, "log", log)
    rt = Runtime(clock=task.Clock())
    rt._settings = make_settings(max_message_bytes=max_message_bytes)
    LegacyResource(extra, rt)
    return [r for r in log.records if r.level == "warn"]


def test_a_message_limit_larger_than_the_config_was_made_for_is_warned_about(monkeypatch):
    warned = _legacy_warnings(monkeypatch, 1_000_000, {"max_message_bytes": 65536})
    assert len(warned) == 1 and "--max-message-bytes" in warned[0].format
    assert _legacy_warnings(monkeypatch, 65536, {"max_message_bytes": 65536}) == []
