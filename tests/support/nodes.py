"""Real Crossbar nodes for integration tests: a node directory in a temp folder, free ports,
``crossbar start --cbdir``, and a wait until the node's components serve.

Test nodes get one thing a production node does not have: an *inspector* transport, a
Unix socket in the node's (temporary) directory whose role may only read the WAMP meta API
(who is subscribed to what), so tests can ask the router directly.
"""

import contextlib
import json
import os
import socket
from pathlib import Path
from typing import Any, Dict, Optional

from components.core.tokens import issue_token
from components.ops.nodeconfig import SOURCE_ROOT, node_config, permission, write_node_dir
from components.ops.process import READY_LINES, NodeProcess, wait_until  # noqa: F401 (re-exported)

#: the checkout under test
REPO = SOURCE_ROOT
#: a 48-byte secret the test nodes and the test tokens share
TEST_SECRET = "test-secret-" + "x" * 40
#: the tests' meta API socket, relative to the node directory
INSPECT_SOCKET = "inspect.sock"
INSPECT_ROLE = "deptcast-test-inspect"


def token(user: str, dept: str, role: str = "member", ttl: int = 3600) -> str:
    """A token signed with :data:`TEST_SECRET`."""
    return issue_token(TEST_SECRET, user, dept, role, ttl)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_run(count: int, tries: int = 100) -> int:
    """The first of ``count`` consecutive ports that are free now (for ``cluster init --local``,
    whose nodes take consecutive ports from ``--base-port``)."""
    for _ in range(tries):
        base = free_port()
        if base + count > 65536:
            continue
        with contextlib.ExitStack() as held:
            try:
                for port in range(base, base + count):
                    s = held.enter_context(socket.socket())
                    s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return base
    raise RuntimeError(f"no {count} consecutive free ports found in {tries} tries")


def with_inspector(config: Dict[str, Any]) -> Dict[str, Any]:
    """``config`` plus the tests' inspector transport (meta API reads only).

    :rtype: dict
    """
    router = config["workers"][0]
    realm = router["realms"][0]
    if not any(r["name"] == INSPECT_ROLE for r in realm["roles"]):
        realm["roles"].append({"name": INSPECT_ROLE, "permissions": [
            permission("wamp.session.", call=True), permission("wamp.subscription.", call=True)]})
        router["transports"].append({
            "type": "rawsocket", "endpoint": {"type": "unix", "path": INSPECT_SOCKET},
            "serializers": ["msgpack"], "auth": {"anonymous": {"type": "static", "role": INSPECT_ROLE}}})
    return config


class Node(NodeProcess):
    """One Crossbar node run as a subprocess from a node directory of its own.

    :param node_dir: made if missing; ``config.json`` is written unless ``config`` is ``None``
        and one exists (the inspector transport is added to it either way)
    """

    def __init__(self, node_dir: Path, port: Optional[int] = None, env: Optional[Dict[str, str]] = None,
                 config: Optional[dict] = None, name: str = "node") -> None:
        node_dir = Path(node_dir)
        self.port = port or free_port()
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("DEPTCAST_")}
        env = {**inherited, "DEPTCAST_JWT_SECRET": TEST_SECRET, "DEPTCAST_NODE": name, **(env or {})}
        super().__init__(node_dir, env=env, name=name, args=["--loglevel", "info"])
        path = node_dir / "config.json"
        mode = path.stat().st_mode & 0o777 if path.exists() else None
        if config is None and path.exists():
            config = json.loads(path.read_text())
        elif config is None:
            config = node_config(port=self.port, root=REPO, interface="127.0.0.1")
        write_node_dir(node_dir, with_inspector(config))
        if mode is not None:
            path.chmod(mode)  # a generated cluster's config is private (it holds the database URL)

    def is_ready(self, until: str = "serving") -> bool:
        # the inspector's transport starts after the web transport that /health answers on
        return super().is_ready(until) and self.inspect_socket.exists()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def inspect_socket(self) -> Path:
        return self.node_dir / INSPECT_SOCKET
