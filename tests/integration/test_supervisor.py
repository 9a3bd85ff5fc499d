"""``deptcast run`` on a real node: a crashed worker brings the node back by itself; a
SIGTERM stops it for good."""

import signal
import time

import psutil
import pytest
import pytest_twisted
from twisted.internet import threads

from tests.support.nodes import Node, token
from tests.support.wamp import connect, wait_for


def router_worker(node: Node) -> psutil.Process:
    """The node's router worker process (a child of the Crossbar controller)."""
    for child in psutil.Process(node.proc.pid).children(recursive=True):
        cmdline = " ".join(child.cmdline())
        if "RouterController" in cmdline:  # the worker sets its process title
            return child
    raise LookupError("no router worker")


@pytest.fixture
def supervised(tmp_path):
    node = Node(tmp_path / "node", name="supervised")
    node.supervised = True
    node.start()
    yield node
    node.stop()


@pytest_twisted.inlineCallbacks
def test_a_killed_router_worker_brings_the_node_back(supervised):
    node = supervised
    client = yield connect(node.url, token("ann", "sup"))
    yield client.listen("deptcast.dept.sup")
    yield client.call("deptcast.send", "sup", "before")
    yield wait_for(lambda: client.messages("deptcast.dept.sup") == ["before"])

    worker = router_worker(node)
    node.mark_log()
    killed = time.monotonic()
    worker.send_signal(signal.SIGKILL)
    yield client.closed  # the node went down with its worker
    yield threads.deferToThread(node.wait_ready, 60.0)
    back_after = time.monotonic() - killed
    assert "deptcast run: the node exited" in node.log_text()
    assert router_worker(node).pid != worker.pid

    again = yield connect(node.url, token("ann", "sup"))
    history = yield again.call("deptcast.history")
    assert [e["message"] for e in history] == ["before"]  # the store survived the crash
    yield again.call("deptcast.send", "sup", "after")
    yield again.close()
    print(f"serving again {back_after:.1f} s after the router worker was killed")


def test_sigterm_stops_the_node_for_good(supervised):
    node = supervised
    processes = psutil.Process(node.proc.pid).children(recursive=True)
    assert len(processes) >= 2  # the controller and its router worker
    node.proc.send_signal(signal.SIGTERM)
    node.proc.wait(30)
    _, alive = psutil.wait_procs(processes, timeout=10)
    assert alive == []
    assert "Received SIGTERM, shutting down" in node.log_text()
    assert "starting it again" not in node.log_text()
