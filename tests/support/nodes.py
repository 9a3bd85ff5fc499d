"""Real Crossbar nodes for integration tests: a node directory in a temp folder, free ports,
``crossbar start --cbdir``, and a wait until the node's components serve.

Test nodes get one thing a production node does not have: an *inspector* transport, a
Unix socket in the node's (temporary) directory whose role may only read the WAMP meta API
(who is subscribed to what), so tests can ask the router directly.
"""

import contextlib
import json
import os
import threading
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple, Union

from components.core.tokens import issue_token
from components.ops.nodeconfig import SOURCE_ROOT, node_config, permission, write_node_dir
from components.ops.ports import free_port, free_port_run  # noqa: F401 (re-exported)
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


def _default_config(port: int) -> Dict[str, Any]:
    """A single node of this checkout on ``port`` of the loopback interface."""
    return node_config(port=port, root=REPO, interface="127.0.0.1")


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


#: what a node's log says when another process took its port before it listened
PORT_TAKEN = "Address already in use"
#: first starts of a node whose port was taken, before its start fails
START_TRIES = 3


class Node(NodeProcess):
    """One Crossbar node run as a subprocess from a node directory of its own.

    :param node_dir: made if missing; ``config.json`` is written unless ``config`` is ``None``
        and one exists (the inspector transport is added to it either way)
    :param port: the node's port; by default a free one, and another one should a process
        take it before the node's first start listens (``free_port`` only says it is free now)
    :param config: the node's configuration, or a function of the port that makes it (then
        a taken port is replaced too: read :attr:`port` after :meth:`start`)
    """

    def __init__(self, node_dir: Path, port: Optional[int] = None, env: Optional[Dict[str, str]] = None,
                 config: Union[dict, Callable[[int], dict], None] = None, name: str = "node") -> None:
        node_dir = Path(node_dir)
        self.port = port or free_port()
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("DEPTCAST_")}
        env = {**inherited, "DEPTCAST_JWT_SECRET": TEST_SECRET, "DEPTCAST_NODE": name, **(env or {})}
        super().__init__(node_dir, env=env, name=name, args=["--loglevel", "info"])
        path = node_dir / "config.json"
        mode = path.stat().st_mode & 0o777 if path.exists() else None
        #: makes the config for another port, when the port may change (see ``port``)
        self._config_for: Optional[Callable[[int], dict]] = None
        if callable(config):
            self._config_for = config
            config = config(self.port)
        elif config is None and path.exists():
            config = json.loads(path.read_text())
        elif config is None:
            if port is None:
                self._config_for = _default_config
            config = _default_config(self.port)
        write_node_dir(node_dir, with_inspector(config))
        if mode is not None:
            path.chmod(mode)  # a generated cluster's config is private (it holds the database URL)

    def start(self, timeout: float = 60.0, wait: bool = True, until: str = "serving") -> "Node":
        """Start the node (see :meth:`NodeProcess.start`). On its first start, a port that
        another process took meanwhile is replaced by a free one when the port may change.

        :raises RuntimeError: if it exits (saying so when its port was taken); ``TimeoutError``
            if it is not ready in time
        """
        tries = START_TRIES if self.proc is None and self._config_for is not None else 1
        for attempt in range(1, tries + 1):
            try:
                super().start(timeout, wait, until)
                return self
            except RuntimeError as e:
                if PORT_TAKEN not in self.log_since_start():
                    raise
                if attempt == tries:
                    raise RuntimeError(f"node {self.name}: another process took its port {self.port} "
                                       f"before it listened ({PORT_TAKEN})") from e
                # the node's log is the start that listened (this one's beside it, for the record)
                self.log_path.replace(self.log_path.with_name(f"node-port-{self.port}-taken.log"))
                self.port = free_port()
                assert self._config_for is not None  # tries > 1
                write_node_dir(self.node_dir, with_inspector(self._config_for(self.port)))
        raise AssertionError("unreachable")  # pragma: no cover

    def is_ready(self, until: str = "serving") -> bool:
        # the inspector's transport starts after the web transport that /health answers on
        return super().is_ready(until) and self.inspect_socket.exists()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def inspect_socket(self) -> Path:
        return self.node_dir / INSPECT_SOCKET


def at_once(action: Callable[[Node], Any], nodes: Iterable[Node]) -> List[BaseException]:
    """Run ``action(node)`` for every node at once, each in a thread; return what they raised."""
    errors: List[BaseException] = []

    def run(node: Node) -> None:
        try:
            action(node)
        except BaseException as e:  # the caller's to raise
            errors.append(e)
    threads = [threading.Thread(target=run, args=(n,)) for n in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


@contextlib.contextmanager
def started(*nodes: Node, timeout: float = 60.0) -> Iterator[Tuple[Node, ...]]:
    """Start ``nodes`` at once and yield them; stop them all afterwards, at once too.

    A node's start is mostly two Python processes importing Crossbar: on two cores, several
    started together are ready in about half the time they take one after the other.

    :raises: the first start's error (the nodes that did start are stopped)
    """
    def stop() -> List[BaseException]:
        return at_once(lambda n: n.stop(), [n for n in nodes if n.proc is not None])

    errors = at_once(lambda n: n.start(timeout), nodes)
    try:
        if errors:
            raise errors[0]
        yield nodes
    except BaseException:
        stop()
        raise
    stop_errors = stop()
    if stop_errors:
        raise stop_errors[0]
