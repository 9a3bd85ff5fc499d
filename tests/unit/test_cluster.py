"""Writing a cluster (``components.ops.cluster``): certificates kept when it is written again."""

import pytest

from components.ops import tls
from components.ops.cluster import init_cluster
from components.ops.topology import NodeSpec

DB = "postgresql://deptcast@db.example/deptcast"


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
