"""Asking a node how it is, from outside: its address from its config, and its ``/health``.

Used by :class:`~components.ops.process.NodeProcess` (readiness), ``deptcast cluster status``
and ``deptcast cluster restart``. Plain blocking HTTP with a short timeout.
"""

import json
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Tuple


@dataclass(frozen=True)
class Health:
    """One ``/health`` answer.

    :ivar status: the HTTP status (200 or 503, 404 for an unknown path)
    :ivar body: the JSON body (see :mod:`components.core.verdict`)
    """

    status: int
    body: Dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def instance(self) -> Optional[str]:
        return self.body.get("instance")


def _local(host: str) -> str:
    # a node listening on every interface is asked on loopback
    return "127.0.0.1" if host in ("", "0.0.0.0") else ("::1" if host == "::" else host)


def node_address(config_path: Path) -> Tuple[str, int]:
    """``(host, port)`` of the web transport in a node's Crossbar config.

    :raises ValueError: if the config has no web transport with a TCP port
    :rtype: tuple
    """
    config = json.loads(Path(config_path).read_text())
    for worker in config.get("workers", []):
        for transport in worker.get("transports", []):
            endpoint = transport.get("endpoint", {})
            if transport.get("type") == "web" and endpoint.get("type") == "tcp":
                return _local(endpoint.get("interface", "")), int(endpoint["port"])
    raise ValueError(f"{config_path}: no web transport with a TCP port")


def get_health(host: str, port: int, serving: bool = False, timeout: float = 2.0) -> Optional[Health]:
    """GET ``/health`` (``/health/serving`` with ``serving``); ``None`` when the node does not
    answer (not listening, stopping, timed out) or answers something that is not its health.

    :rtype: Health or None
    """
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/health" + ("/serving" if serving else "")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    except (urllib.error.URLError, OSError, socket.timeout):
        return None
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    return Health(status, body if isinstance(body, dict) else {})
