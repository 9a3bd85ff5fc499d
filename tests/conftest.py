"""Fixtures the test layers share (helpers live in :mod:`tests.support`): one real node per
test module that asks for it, and one that keeps little history."""

import pytest

from tests.support.nodes import Node


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    """A real single node (SQLite store) for the module, stopped afterwards."""
    n = Node(tmp_path_factory.mktemp("node"), name="single")
    n.start()
    yield n
    n.stop()


@pytest.fixture(scope="module")
def retention_node(tmp_path_factory):
    """Keeps the newest 3 messages per topic, pruning every 0.2 s; history pages of 3."""
    n = Node(tmp_path_factory.mktemp("retention"), name="retention",
             env={"DEPTCAST_RETENTION_MESSAGES": "3", "DEPTCAST_RETENTION_INTERVAL": "0.2",
                  "DEPTCAST_HISTORY_LIMIT": "3"})
    n.start()
    yield n
    n.stop()
