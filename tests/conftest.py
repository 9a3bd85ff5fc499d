"""Fixtures the test layers share (helpers live in :mod:`tests.support`): one real node per
test module that asks for it."""

import pytest

from tests.support.nodes import Node


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    """A real single node (SQLite store) for the module, stopped afterwards."""
    n = Node(tmp_path_factory.mktemp("node"), name="single")
    n.start()
    yield n
    n.stop()
