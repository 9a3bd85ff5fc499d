"""A cluster node's Crossbar configuration: the single-node configuration
(:func:`components.ops.nodeconfig.node_config`) plus a full mesh of router-to-router links.

Each node owns one link to every peer and pulls over it what its own subscribers need
(``forward_local_events`` only): an event crosses one link at most, so nothing is delivered
twice. Each link authenticates to the peer's ``/rlink`` path (or, with TLS links, the peer's
link port) with WAMP-cryptosign using the node key; the peer lists that public key as a
principal of the role :data:`~components.core.names.RLINK_ROLE`.
"""

import ipaddress
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from components.core import names
from components.core.names import RLINK_ROLE
from components.core.settings import DEFAULT_MAX_MESSAGE_BYTES
from components.ops import tls
from components.ops.nodeconfig import node_config, permission, websocket_options
from components.ops.topology import NodeSpec

#: the web path peers' links connect to (not proxied by the load balancer)
RLINK_PATH = "rlink"


def rlink_role() -> Dict[str, Any]:
    """The role of peers' link sessions: subscribe and publish on deptcast's topics, nothing else."""
    return {"name": RLINK_ROLE, "permissions": [permission("deptcast.", publish=True, subscribe=True)]}


def rlink_path(peers: Sequence[NodeSpec], pubkeys: Dict[str, str],
               max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Dict[str, Any]:
    """The ``/rlink`` WebSocket path: WAMP-cryptosign, one principal per peer node."""
    return {
        "type": "websocket",
        "serializers": ["cbor", "msgpack", "json"],
        "auth": {"cryptosign": {"type": "static", "principals": {
            peer.name: {"realm": names.REALM, "role": RLINK_ROLE, "authorized_keys": [pubkeys[peer.name]]}
            for peer in peers
        }}},
        "options": websocket_options(max_message_bytes),
    }


def tls_link_transport(me: NodeSpec, peers: Sequence[NodeSpec], pubkeys: Dict[str, str],
                       max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Dict[str, Any]:
    """The TLS link port: a WebSocket transport that only peers reach, with the node's
    certificate, requiring a client certificate from the cluster's CA (mutual TLS; Crossbar
    asks for the peer's certificate whenever ``ca_certificates`` is set), and the same
    cryptosign principals as the plain ``/rlink`` path.

    :rtype: dict
    """
    endpoint: Dict[str, Any] = {"type": "tcp", "port": me.tls_port, "tls": tls.server_tls(),
                                "backlog": 64}
    interface = listen_interface(me.host)
    if interface:
        endpoint["interface"] = interface
    path = rlink_path(peers, pubkeys, max_message_bytes)
    return {"type": "websocket", "endpoint": endpoint, **{k: path[k] for k in ("serializers", "auth", "options")}}


def rlink(me: NodeSpec, peer: NodeSpec, use_tls: bool = False) -> Dict[str, Any]:
    """The link ``me`` owns to ``peer``: it pulls the events ``me``'s own subscribers need.

    On the owning node's side (the link's *local* leg), ``forward_local_events`` means:
    for every subscription made on this node, subscribe on the peer and re-publish what
    arrives here. Calls are never forwarded: every node registers its own procedures.

    :param use_tls: connect to the peer's TLS link port (``wss://``), checking its certificate
        (its host name or address) against the cluster's CA and showing this node's own
    """
    if use_tls:
        endpoint = {"type": "tcp", "host": peer.host, "port": peer.tls_port, "timeout": 5,
                    "tls": tls.client_tls(peer.host)}
        url = f"wss://{peer.bracketed_host}:{peer.tls_port}/{RLINK_PATH}"
    else:
        endpoint = {"type": "tcp", "host": peer.host, "port": peer.port, "timeout": 5}
        url = f"ws://{peer.address}/{RLINK_PATH}"
    return {
        "id": f"to-{peer.name}",
        "realm": names.REALM,
        "authid": me.name,
        "transport": {
            "type": "websocket",
            "endpoint": endpoint,
            "url": url,
            "serializers": ["cbor"],
        },
        "forward_local_events": True,
        "forward_remote_events": False,
        "forward_local_invocations": False,
        "forward_remote_invocations": False,
    }


def listen_interface(host: str) -> Optional[str]:
    """Listen on the node's own address when it is an IP literal, else on every interface."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    return host


def cluster_node_config(me: NodeSpec, nodes: Sequence[NodeSpec], pubkeys: Dict[str, str], db: str,
                        root: Optional[Path] = None, use_tls: bool = False,
                        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Dict[str, Any]:
    """The Crossbar configuration of node ``me`` in the cluster ``nodes``.

    :param pubkeys: node name to public key (hex)
    :param db: the PostgreSQL URL all nodes share
    :param root: the checkout holding ``components`` and ``web``
    :param use_tls: links over TLS on each node's link port; the web port then serves no
        ``/rlink`` at all
    :rtype: dict
    """
    peers = [n for n in nodes if n.name != me.name]
    env = {"DEPTCAST_DB": db, "DEPTCAST_NODE": me.name,
           "DEPTCAST_PEERS": ",".join(p.name for p in peers)}
    if use_tls:
        paths: Dict[str, Any] = {}
        transports = [tls_link_transport(me, peers, pubkeys, max_message_bytes)]
    else:
        paths = {RLINK_PATH: rlink_path(peers, pubkeys, max_message_bytes)}
        transports = []
    return node_config(port=me.port, root=root, interface=listen_interface(me.host),
                       extra_roles=[rlink_role()], extra_paths=paths, extra_transports=transports,
                       rlinks=[rlink(me, p, use_tls) for p in peers], env=env,
                       max_message_bytes=max_message_bytes)
