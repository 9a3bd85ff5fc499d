"""Fixtures of the store tests (``test_store*.py``, ``test_*_store.py``): each test runs on both
implementations, on a database of its own."""

import pytest

from tests.support.stores import BACKENDS, migrated_store, store_location


@pytest.fixture(params=BACKENDS)
def db(request, tmp_path):
    """A database location (file path or URL) that no other test uses; a PostgreSQL schema is
    named after the test module (``deptcast_store_keys_...``)."""
    module = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    with store_location(request.param, tmp_path, f"deptcast_{module}") as location:
        yield location


@pytest.fixture
def store(db):
    """The store at :func:`db`, migrated."""
    with migrated_store(db) as s:
        yield s
