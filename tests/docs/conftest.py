"""The node the docs' samples and reference checks run against: one for the package."""

import pytest

from tests.support.nodes import Node


@pytest.fixture(scope="package")
def docs_node(tmp_path_factory):
    """A real node (SQLite) named ``n1``, as the samples show it."""
    node = Node(tmp_path_factory.mktemp("docs-node"), name="n1")
    node.start()
    yield node
    node.stop()
