"""The position file (``components.client.state.FileState``): locked while in use, and a damaged
one named with its reason."""

import pytest

from components.client.state import FileState, StateError


def test_a_state_file_in_use_is_refused(tmp_path):
    first = FileState(tmp_path / "s")
    first.lock()
    with pytest.raises(StateError, match="in use"):
        FileState(tmp_path / "s").load()
    first.unlock()
    assert FileState(tmp_path / "s").load() is None
    with pytest.raises(StateError, match="does not exist"):
        FileState(tmp_path / "missing" / "s").load()


def test_a_damaged_state_file_names_the_reason(tmp_path):
    (tmp_path / "s").write_text("{not json")
    with pytest.raises(StateError, match="not JSON"):
        FileState(tmp_path / "s").load()
