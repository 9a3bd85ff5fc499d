"""The unit tests share one process: what a test installs process-wide is taken out after it."""

import pytest

from components import upstream


@pytest.fixture(autouse=True)
def no_patch_left_behind():
    """A node installs its upstream patches for good (once, in its composition root); a unit
    test that installs some must not leave them for the next test."""
    yield
    upstream.uninstall()
