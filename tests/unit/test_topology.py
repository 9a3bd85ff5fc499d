"""A cluster's nodes (``components.ops.topology``): ``--node`` entries with their link ports,
``--local N`` nodes on this machine, the checks a description passes, and ``cluster.json``."""

import pytest

from components.ops.topology import (DEFAULT_BASE_PORT, LOCAL_HOST, MAX_LOCAL_NODES, NodeSpec, check_cluster,
                                     listen_port, local_count, local_nodes, parse_node_spec, read_description,
                                     spans_hosts, write_description)

DB = "postgresql://deptcast@127.0.0.1:5432/deptcast"


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


def test_local_count_reads_a_number_or_auto():
    assert local_count("2") == 2
    assert local_count(" 16 ") == 16
    assert local_count(str(MAX_LOCAL_NODES)) == MAX_LOCAL_NODES
    # auto: one node per core
    assert local_count("auto", cpu_count=lambda: 8) == 8
    assert local_count("AUTO", cpu_count=lambda: 2) == 2
    assert local_count("auto", cpu_count=lambda: 4 * MAX_LOCAL_NODES) == MAX_LOCAL_NODES


@pytest.mark.parametrize("text, reason", [
    ("0", "2 to"), ("1", "2 to"), (str(MAX_LOCAL_NODES + 1), "2 to"), ("-2", "number of nodes"),
    ("two", "number of nodes"), ("2.5", "number of nodes"), ("", "number of nodes"), ("²", "number of nodes"),
    ("9" * 40, "number of nodes"),
])
def test_local_count_refuses(text, reason):
    with pytest.raises(ValueError, match=reason):
        local_count(text)


@pytest.mark.parametrize("cores", [1, None])
def test_auto_on_one_core_explains(cores):
    with pytest.raises(ValueError, match="at least two nodes"):
        local_count("auto", cpu_count=lambda: cores)


def test_local_nodes_web_ports_then_link_ports():
    nodes = local_nodes(3, 9000)
    assert nodes == [NodeSpec("n1", LOCAL_HOST, 9000, 9003), NodeSpec("n2", LOCAL_HOST, 9001, 9004),
                     NodeSpec("n3", LOCAL_HOST, 9002, 9005)]
    # no port used twice, with or without TLS links
    check_cluster(nodes, DB, use_tls=True)
    assert [n.name for n in local_nodes(2)] == ["n1", "n2"]
    assert local_nodes(2)[0].port == DEFAULT_BASE_PORT


def test_local_nodes_refuse_ports_past_the_range_or_the_balancers():
    assert local_nodes(2, 65532)[-1].tls_port == 65535
    with pytest.raises(ValueError, match="65535"):
        local_nodes(2, 65533)
    with pytest.raises(ValueError, match="65535"):
        local_nodes(2, 0)
    with pytest.raises(ValueError, match="load balancer's port 9003"):
        local_nodes(2, 9000, avoid=[9003])
    local_nodes(2, 9000, avoid=[9004, 8999])


@pytest.mark.parametrize("listen, port", [("8000", 8000), ("127.0.0.1:8000", 8000), ("[::1]:443", 443),
                                          ("unix:/run/lb.sock", None), ("0", None)])
def test_listen_port(listen, port):
    assert listen_port(listen) == port


def test_the_description_keeps_each_nodes_name_and_address(tmp_path):
    nodes = [NodeSpec("n1", "10.0.0.1", 8080, 8443), NodeSpec("n2", "::1", 9090)]
    write_description(tmp_path, nodes)
    # the link port is not kept: status and restart ask each node's web port
    assert read_description(tmp_path) == [NodeSpec("n1", "10.0.0.1", 8080), NodeSpec("n2", "::1", 9090)]
    assert read_description(tmp_path)[1].address == "[::1]:9090"
    with pytest.raises(ValueError, match="not found"):
        read_description(tmp_path / "elsewhere")


def test_nodes_span_hosts_unless_all_are_on_this_machine():
    assert not spans_hosts([NodeSpec("n1", "127.0.0.1", 1), NodeSpec("n2", "127.0.0.1", 2)])
    assert not spans_hosts([NodeSpec("n1", "::1", 1)])
    assert spans_hosts([NodeSpec("n1", "10.0.0.1", 1), NodeSpec("n2", "10.0.0.1", 2)])
    assert spans_hosts([NodeSpec("n1", "127.0.0.1", 1), NodeSpec("n2", "10.0.0.2", 2)])
