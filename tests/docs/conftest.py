"""The node the docs' samples and reference checks run against: one for the package."""

import json
import urllib.request

import pytest

from tests.support.nodes import Node, wait_until


def _store_settled(node: Node) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{node.port}/health", timeout=5) as answer:
        store = json.load(answer)["store"]
    return store["writes"] == "up" and store["reads"] == "up"


@pytest.fixture(scope="package")
def docs_node(tmp_path_factory):
    """A real node (SQLite) named ``n1``, as the samples show it: settled, its store's reads and
    writes both probed (a node seconds old says ``"reads": "unknown"`` until the first probe)."""
    node = Node(tmp_path_factory.mktemp("docs-node"), name="n1")
    node.start()
    try:
        wait_until(lambda: _store_settled(node), 30, "the docs node's store to be probed", interval=0.2)
        yield node
    finally:
        node.stop()
