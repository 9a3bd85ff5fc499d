"""The Crossbar node configuration deptcast runs with, generated from a few parameters.

``.crossbar/config.json`` in the checkout is :func:`node_config` with its defaults
(a unit test keeps the two equal); tests and ``deptcast node`` render variants of it.
"""

import json
from pathlib import Path
from typing import Any, Dict, List, Optional

from components import names

BACKEND_ROLE = "deptcast-backend"
#: the node-local socket the components join over; relative to the node directory
BACKEND_SOCKET = "deptcast.sock"
DEFAULT_PORT = 8080
#: WebSocket ping interval and timeout (ms) on client transports; proxies must allow longer idles
PING_INTERVAL_MS = 20_000
PING_TIMEOUT_MS = 10_000
#: pending connections the web transport queues (Crossbar's default of 50 stalls mass reconnects)
LISTEN_BACKLOG = 1024
#: how long browsers may cache the page's files: short, so an upgrade reaches them soon
STATIC_CACHE_SECONDS = 60

COMPONENT_CLASSES = ("components.auth.AuthComponent", "components.api.ApiComponent",
                     "components.presenceservice.PresenceComponent")


def static_role(name: str, call: bool, register: bool, publish: bool, subscribe: bool,
                disclose_caller: bool) -> Dict[str, Any]:
    """A role with static permissions on every URI of the realm (the node's own sessions only:
    clients get the dynamic authorizer).

    :rtype: dict
    """
    return {
        "name": name,
        "permissions": [{
            "uri": "", "match": "prefix",
            "allow": {"call": call, "register": register, "publish": publish, "subscribe": subscribe},
            "disclose": {"caller": disclose_caller, "publisher": True},
            "cache": True,
        }],
    }


def _backend_transport() -> Dict[str, Any]:
    return {"type": "rawsocket", "endpoint": {"type": "unix", "path": BACKEND_SOCKET},
            "serializer": "msgpack"}


def node_config(port: int = DEFAULT_PORT, root: Optional[Path] = None,
                interface: Optional[str] = None,
                extra_roles: Optional[List[Dict[str, Any]]] = None,
                extra_paths: Optional[Dict[str, Any]] = None,
                rlinks: Optional[List[Dict[str, Any]]] = None,
                env: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """The node configuration as a dict.

    :param port: the TCP port of the web transport (``/``, ``/ws``)
    :param root: the checkout, if the node directory is not ``<root>/.crossbar``;
        ``None`` writes paths relative to ``.crossbar``
    :param interface: the address to listen on; ``None`` listens on all
    :param rlinks: router-to-router links of the realm (cluster nodes)
    :param env: environment variables for the component worker (e.g. ``DEPTCAST_DB``)
    :rtype: dict
    """
    base = str(root) if root is not None else ".."
    # a restarted node takes every reconnecting page at once: Crossbar's default backlog is 50
    endpoint: Dict[str, Any] = {"type": "tcp", "port": port, "backlog": LISTEN_BACKLOG}
    if interface:
        endpoint["interface"] = interface
    realm: Dict[str, Any] = {
        "name": names.REALM,
        "roles": [
            static_role(BACKEND_ROLE, call=True, register=True, publish=True, subscribe=True,
                        disclose_caller=True),
            {"name": "member", "authorizer": names.PROC_AUTHORIZE},
            {"name": "publisher", "authorizer": names.PROC_AUTHORIZE},
        ] + list(extra_roles or []),
    }
    if rlinks:
        realm["rlinks"] = rlinks
    paths: Dict[str, Any] = {
        "/": {"type": "static", "directory": f"{base}/web",
              "options": {"enable_directory_listing": False, "cache_timeout": STATIC_CACHE_SECONDS}},
        "ws": {
            "type": "websocket",
            "serializers": ["json", "msgpack", "cbor"],
            "auth": {"ticket": {"type": "dynamic", "authenticator": names.PROC_AUTHENTICATE}},
            "options": {"auto_ping_interval": PING_INTERVAL_MS, "auto_ping_timeout": PING_TIMEOUT_MS},
        },
        "dev": {"type": "path", "paths": {
            "token": {"type": "resource", "classname": "components.devtoken.DevTokenResource"},
        }},
        # the old service's endpoint, /webSocket/<key> (a resource: the key is in the path)
        "webSocket": {"type": "resource", "classname": "components.legacy.LegacyResource",
                      "extra": {"auto_ping_interval": PING_INTERVAL_MS, "auto_ping_timeout": PING_TIMEOUT_MS}},
        "api": {"type": "path", "paths": {
            "send": {"type": "resource", "classname": "components.httpapi.HttpSendResource"},
        }},
    }
    paths.update(extra_paths or {})
    container_options: Dict[str, Any] = {"pythonpath": [base]}
    if env:
        container_options["env"] = {"inherit": True, "vars": dict(env)}
    return {
        "version": 2,
        "controller": {},
        "workers": [
            {
                "type": "router",
                "options": {"pythonpath": [base]},
                "realms": [realm],
                "transports": [
                    {"type": "web", "endpoint": endpoint, "paths": paths},
                    {"type": "rawsocket", "endpoint": {"type": "unix", "path": BACKEND_SOCKET},
                     "serializers": ["msgpack", "json"],
                     "auth": {"anonymous": {"type": "static", "role": BACKEND_ROLE}}},
                ],
            },
            {
                "type": "container",
                "options": container_options,
                "components": [
                    {"type": "class", "classname": cls, "realm": names.REALM, "transport": _backend_transport()}
                    for cls in COMPONENT_CLASSES
                ],
            },
        ],
    }


def render(config: Dict[str, Any]) -> str:
    return json.dumps(config, indent=2) + "\n"


def write_node_dir(node_dir: Path, config: Dict[str, Any]) -> Path:
    """Write ``config.json`` into ``node_dir`` (made if missing); return its path.

    :rtype: Path
    """
    node_dir = Path(node_dir)
    node_dir.mkdir(parents=True, exist_ok=True)
    path = node_dir / "config.json"
    path.write_text(render(config))
    return path
