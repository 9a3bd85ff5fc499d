"""The Crossbar node configuration deptcast runs with, generated from a few parameters.

``.crossbar/config.json`` in the checkout is :func:`node_config` with its defaults
(a unit test keeps the two equal); ``deptcast node-config``, the cluster generator and the
tests render variants of it.

The node is one router worker. Its realm's components run inside it as router components,
joined in-process one after the other, before the transports open; nothing else may join with
their role. The first is the node's composition root (``components.wamp.root``: the upstream
patches, the store, the message service), then the authorizer, the api, presence, the web
transport's bridge session and operations. ``/health`` and ``/metrics`` are
the operator's (``components.edge.health``, ``components.edge.metrics``).
"""

import json
from pathlib import Path
from typing import Any, Dict, List, Optional

from components.core import names
from components.core.frames import wamp_message_cap
from components.core.settings import DEFAULT_MAX_MESSAGE_BYTES, PING_INTERVAL_MS, PING_TIMEOUT_MS

#: the tree holding ``components/`` and ``web/`` (this checkout, or the installed tree)
SOURCE_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PORT = 8080
#: pending connections the web transport queues (Crossbar's default of 50 stalls mass reconnects)
LISTEN_BACKLOG = 1024
#: milliseconds a client has for the WebSocket opening handshake, and to answer a close frame
OPEN_HANDSHAKE_TIMEOUT_MS = 10_000
CLOSE_HANDSHAKE_TIMEOUT_MS = 5_000
#: how long browsers may cache the page's files: short, so an upgrade reaches them soon
STATIC_CACHE_SECONDS = 60

#: the node's own components, run in the router worker (in-process, no network hop), in this
#: order: the composition root first (Crossbar starts each once the one before has joined)
COMPONENT_CLASSES = ("components.wamp.root.RootComponent",
                     "components.wamp.auth.AuthorizerComponent", "components.wamp.sessionlife.SessionLifeComponent",
                     "components.wamp.api.ApiComponent",
                     "components.wamp.presence.PresenceComponent", "components.wamp.bridge.BridgeComponent",
                     "components.wamp.operations.OperationsComponent", "components.wamp.receipts.ReceiptsComponent")
#: Crossbar's factory of the ticket authenticator, a function in the router worker
AUTHENTICATOR_FACTORY = "components.wamp.auth.create_authenticator"


def permission(uri: str, call: bool = False, register: bool = False, publish: bool = False,
               subscribe: bool = False, disclose_caller: bool = False) -> Dict[str, Any]:
    """One static permission on the URIs starting with ``uri``.

    :rtype: dict
    """
    return {
        "uri": uri, "match": "prefix",
        "allow": {"call": call, "register": register, "publish": publish, "subscribe": subscribe},
        "disclose": {"caller": disclose_caller, "publisher": True},
        "cache": True,
    }


def backend_role() -> Dict[str, Any]:
    """The role of the node's own components: deptcast's URIs, and the parts of the meta API
    they read (who joined and left, who subscribed to what). Nothing else.

    :rtype: dict
    """
    return {"name": names.BACKEND_ROLE, "permissions": [
        permission("deptcast.", register=True, publish=True, subscribe=True, disclose_caller=True),
        permission("wamp.session.", call=True, subscribe=True),
        permission("wamp.subscription.", call=True, subscribe=True),
    ]}


def websocket_options(max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Dict[str, Any]:
    """Options of the node's WAMP WebSocket paths (``/ws``, ``/rlink``): pings (sent whatever the
    client sends), handshake timeouts, and inbound
    messages and frames no larger than a send of the largest message needs
    (:func:`~components.core.frames.wamp_message_cap`; Crossbar's default is 16 MiB, held in
    memory before the session has even authenticated).

    :rtype: dict
    """
    cap = wamp_message_cap(max_message_bytes)
    return {"auto_ping_interval": PING_INTERVAL_MS, "auto_ping_timeout": PING_TIMEOUT_MS,
            # a ping every interval, whatever the client sends: one that sends but never reads
            # (so never answers) is dropped after the timeout (Autobahn's default counts any
            # incoming traffic as alive and skips the ping)
            "auto_ping_restart_on_any_traffic": False,
            # a peer that does not answer our close frame (a slow reader, a timeout) is aborted
            # after this (Crossbar's default, 0, waits for ever)
            "open_handshake_timeout": OPEN_HANDSHAKE_TIMEOUT_MS, "close_handshake_timeout": CLOSE_HANDSHAKE_TIMEOUT_MS,
            "max_message_size": cap, "max_frame_size": cap}


def node_config(port: int = DEFAULT_PORT, root: Optional[Path] = None,
                interface: Optional[str] = None,
                extra_roles: Optional[List[Dict[str, Any]]] = None,
                extra_paths: Optional[Dict[str, Any]] = None,
                rlinks: Optional[List[Dict[str, Any]]] = None,
                env: Optional[Dict[str, str]] = None,
                max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                extra_transports: Optional[List[Dict[str, Any]]] = None) -> Dict[str, Any]:
    """The node configuration as a dict.

    :param port: the TCP port of the web transport (``/``, ``/ws``)
    :param root: the checkout, if the node directory is not ``<root>/.crossbar``;
        ``None`` writes paths relative to ``.crossbar``
    :param interface: the address to listen on; ``None`` listens on all
    :param rlinks: router-to-router links of the realm (cluster nodes)
    :param env: environment variables for the router worker (e.g. ``DEPTCAST_DB``)
    :param max_message_bytes: the message limit the WebSocket caps are sized for; a value
        other than the default is also set as the worker's ``DEPTCAST_MAX_MESSAGE_BYTES``, so
        the two cannot disagree
    :param extra_transports: further transports of the router worker (a cluster's TLS link port)
    :rtype: dict
    """
    base = str(root) if root is not None else ".."
    # a restarted node takes every reconnecting page at once: Crossbar's default backlog is 50
    endpoint: Dict[str, Any] = {"type": "tcp", "port": port, "backlog": LISTEN_BACKLOG}
    if interface:
        endpoint["interface"] = interface
    realm: Dict[str, Any] = {
        "name": names.REALM,
        "roles": [backend_role()] + [{"name": role, "authorizer": names.PROC_AUTHORIZE}
                                     for role in names.CLIENT_ROLES] + list(extra_roles or []),
    }
    if rlinks:
        realm["rlinks"] = rlinks
    paths: Dict[str, Any] = {
        # the page, from the installed package deptcast_web, with its security headers
        "/": {"type": "resource", "classname": "components.edge.static.create_web_root",
              "extra": {"cache_timeout": STATIC_CACHE_SECONDS}},
        "ws": {
            "type": "websocket",
            "serializers": ["json", "msgpack", "cbor"],
            "auth": {"ticket": {"type": "function", "create": AUTHENTICATOR_FACTORY}},
            "options": websocket_options(max_message_bytes),
        },
        "dev": {"type": "path", "paths": {
            "token": {"type": "resource", "classname": "components.edge.devtoken.DevTokenResource"},
        }},
        # the old service's endpoint, /webSocket/<key> (a resource: the key is in the path)
        "webSocket": {"type": "resource", "classname": "components.edge.legacy.LegacyResource",
                      "extra": {"auto_ping_interval": PING_INTERVAL_MS, "auto_ping_timeout": PING_TIMEOUT_MS,
                                "max_message_bytes": max_message_bytes}},
        "api": {"type": "path", "paths": {
            "send": {"type": "resource", "classname": "components.edge.httpapi.HttpSendResource"},
            "send_batch": {"type": "resource", "classname": "components.edge.httpapi.HttpSendBatchResource"},
            "revoke": {"type": "resource", "classname": "components.edge.httpapi.HttpRevokeResource"},
        }},
        # internal: for monitoring and balancers, not proxied to the public (components.ops.nginx)
        "health": {"type": "resource", "classname": "components.edge.health.HealthResource"},
        "metrics": {"type": "resource", "classname": "components.edge.metrics.MetricsResource"},
    }
    paths.update(extra_paths or {})
    router_options: Dict[str, Any] = {"pythonpath": [base]}
    env = dict(env or {})
    if max_message_bytes != DEFAULT_MAX_MESSAGE_BYTES:
        env["DEPTCAST_MAX_MESSAGE_BYTES"] = str(max_message_bytes)
    if env:
        router_options["env"] = {"inherit": True, "vars": env}
    return {
        "version": 2,
        "controller": {},
        "workers": [
            {
                "type": "router",
                "options": router_options,
                "realms": [realm],
                "components": [
                    {"type": "class", "classname": cls, "realm": names.REALM, "role": names.BACKEND_ROLE}
                    for cls in COMPONENT_CLASSES
                ],
                "transports": [{"type": "web", "endpoint": endpoint, "paths": paths}] + list(extra_transports or []),
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
