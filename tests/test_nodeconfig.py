"""Unit tests of components.nodeconfig and the checked-in single-node config."""

import json

from components.nodeconfig import BACKEND_ROLE, node_config, render
from tests.nodes import REPO


def test_checked_in_config_is_the_default_render():
    assert (REPO / ".crossbar" / "config.json").read_text() == render(node_config())


def test_client_roles_use_the_authorizer_and_backend_only_on_unix_socket():
    config = node_config()
    router, container = config["workers"]
    roles = {r["name"]: r for r in router["realms"][0]["roles"]}
    assert roles["member"] == {"name": "member", "authorizer": "deptcast.internal.authorize"}
    assert roles["publisher"] == {"name": "publisher", "authorizer": "deptcast.internal.authorize"}
    web, backend = router["transports"]
    # the only transport reachable over the network authenticates by ticket only
    assert web["endpoint"]["type"] == "tcp"
    assert list(web["paths"]["ws"]["auth"]) == ["ticket"]
    # the backend role is only granted on the node-local Unix socket
    assert backend["endpoint"]["type"] == "unix"
    assert backend["auth"] == {"anonymous": {"type": "static", "role": BACKEND_ROLE}}
    assert container["options"]["pythonpath"] == [".."]


def test_port_interface_and_root(tmp_path):
    config = node_config(port=9123, root=tmp_path, interface="127.0.0.1")
    web = config["workers"][0]["transports"][0]
    assert web["endpoint"] == {"type": "tcp", "port": 9123, "interface": "127.0.0.1", "backlog": 1024}
    assert web["paths"]["/"]["directory"] == f"{tmp_path}/web"
    assert json.loads(render(config)) == config
