"""Unit tests of components.ops.nodeconfig and the checked-in single-node config."""

import json

from components.core import names
from components.ops.nodeconfig import COMPONENT_CLASSES, node_config, render
from tests.support.nodes import REPO


def test_checked_in_config_is_the_default_render():
    assert (REPO / ".crossbar" / "config.json").read_text() == render(node_config())


def test_one_router_worker_runs_the_components_and_serves_only_the_web_transport():
    config = node_config()
    [router] = config["workers"]
    assert router["type"] == "router" and router["options"]["pythonpath"] == [".."]
    roles = {r["name"]: r for r in router["realms"][0]["roles"]}
    assert roles["member"] == {"name": "member", "authorizer": "deptcast.internal.authorize"}
    assert roles["publisher"] == {"name": "publisher", "authorizer": "deptcast.internal.authorize"}
    # the components join in-process with the backend role; no transport grants it
    assert [c["classname"] for c in router["components"]] == list(COMPONENT_CLASSES)
    assert {c["role"] for c in router["components"]} == {names.BACKEND_ROLE}
    [web] = router["transports"]
    assert web["endpoint"]["type"] == "tcp"
    assert web["paths"]["ws"]["auth"] == {"ticket": {"type": "function",
                                                      "create": "components.wamp.auth.create_authenticator"}}


def test_the_backend_role_reaches_deptcast_uris_and_the_meta_api_it_reads_only():
    [router] = node_config()["workers"]
    [backend] = [r for r in router["realms"][0]["roles"] if r["name"] == names.BACKEND_ROLE]
    allowed = {(p["uri"], action) for p in backend["permissions"] for action, ok in p["allow"].items() if ok}
    assert allowed == {("deptcast.", "register"), ("deptcast.", "publish"), ("deptcast.", "subscribe"),
                       ("wamp.session.", "call"), ("wamp.session.", "subscribe"), ("wamp.subscription.", "call"),
                       ("wamp.subscription.", "subscribe")}
    assert all(p["match"] == "prefix" for p in backend["permissions"])


def test_port_interface_and_root(tmp_path):
    config = node_config(port=9123, root=tmp_path, interface="127.0.0.1")
    web = config["workers"][0]["transports"][0]
    assert web["endpoint"] == {"type": "tcp", "port": 9123, "interface": "127.0.0.1", "backlog": 1024}
    # the page comes from the installed package deptcast_web, whatever the root
    assert web["paths"]["/"] == {"type": "resource", "classname": "components.edge.static.create_web_root",
                                 "extra": {"cache_timeout": 60}}
    assert json.loads(render(config)) == config
