"""A cluster node's configuration (``components.ops.meshconfig``): links over TLS on their own
port, both ends checked."""

from components.ops.meshconfig import cluster_node_config
from components.ops.topology import NodeSpec

DB = "postgresql://deptcast@db.example/deptcast"


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
