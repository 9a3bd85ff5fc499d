"""The unit tests share one process: what a test installs process-wide is taken out after it."""

import pytest

from components.edge import hotpath
from components.wamp import rlinks


@pytest.fixture(autouse=True)
def no_link_repair_left_behind():
    """The link gate installs the rlink repair on Crossbar's class for good (in a node, once);
    a unit test that starts a gate must not leave it for the next test."""
    yield
    rlinks.uninstall()


@pytest.fixture(autouse=True)
def no_hot_path_left_behind():
    """The web resources install the worker's hot path for good (in a node, once); a unit test
    that makes one must not leave it for the next test."""
    yield
    hotpath.uninstall()
