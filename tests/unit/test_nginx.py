"""The load balancer's configuration (``components.ops.nginx``): limits per client address, and
the quick-start sign-in kept out."""

from components.ops.nginx import nginx_config
from components.ops.topology import NodeSpec


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


def test_the_balancer_takes_a_storm_of_reconnecting_pages():
    """A node that dies sends all its clients through the balancer at once: the listen queue,
    the connections per worker (two per WebSocket) and the open files hold 20,000 pages."""
    text = nginx_config([NodeSpec("n1", "10.0.0.1", 8080)], listen="127.0.0.1:8000")
    assert "listen 127.0.0.1:8000 backlog=4096;" in text
    assert "worker_connections 50000;" in text and "worker_rlimit_nofile 100000;" in text
    assert "worker_processes auto;" in text
