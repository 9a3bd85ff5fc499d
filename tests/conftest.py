"""Shared fixtures: one real node per test module that asks for it."""

import pytest

from components.tokens import issue_token
from tests.nodes import TEST_SECRET, Node


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    """A real single node (SQLite store) for the module, stopped afterwards."""
    n = Node(tmp_path_factory.mktemp("node"), name="single")
    n.start()
    yield n
    n.stop()


def token(user: str, dept: str, role: str = "member", ttl: int = 3600) -> str:
    return issue_token(TEST_SECRET, user, dept, role, ttl)
