"""The position file (``components.client.state.FileState``): locked while in use, a damaged
one named with its reason, and written safely: mode 0600, through a new temporary file that no
planted link can redirect, flushed, renamed, never left half-written."""

import errno
import os
import stat

import pytest

from components.client.state import FileState, StateError
from components.core.statefile import parse_state


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


# -- how a save writes the file


POSITIONS = {"deptcast.all": 3, "deptcast.dept.cardio": 7}


def test_a_saved_state_file_is_private_whatever_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        state = FileState(tmp_path / "s")
        state.save("cardio_alice", POSITIONS)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "s").stat().st_mode) == 0o600
    assert FileState(tmp_path / "s").load() == ("cardio_alice", POSITIONS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s", "s.lock"]   # no temporary file left


def test_a_link_planted_at_the_old_temporary_name_is_not_followed(tmp_path):
    """The state file used to be written through ``.<name>.<pid>.tmp``: anyone who could write in
    the folder could point that name at another file of the user and have it overwritten."""
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    planted = tmp_path / f".s.{os.getpid()}.tmp"
    planted.symlink_to(victim)
    state = FileState(tmp_path / "s")
    state.save("cardio_alice", POSITIONS)
    assert victim.read_text() == "precious\n"
    assert not (tmp_path / "s").is_symlink() and parse_state((tmp_path / "s").read_bytes())[1] == POSITIONS


def test_a_link_at_the_state_file_is_replaced_not_written_through(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / "s").symlink_to(victim)
    with pytest.raises(StateError, match="symbolic link"):
        FileState(tmp_path / "s").load()
    FileState(tmp_path / "s").save("cardio_alice", POSITIONS)
    assert victim.read_text() == "precious\n" and not (tmp_path / "s").is_symlink()


def test_a_link_at_the_lock_file_is_not_followed(tmp_path):
    (tmp_path / "s.lock").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(StateError, match="lock file"):
        FileState(tmp_path / "s").lock()
    assert not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize("fails", ["write", "fsync", "replace"])
def test_a_crash_while_writing_leaves_the_old_file_whole(tmp_path, monkeypatch, fails):
    state = FileState(tmp_path / "s")
    state.save("cardio_alice", {"deptcast.all": 1})
    before = (tmp_path / "s").read_bytes()

    def crash(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")
    if fails == "write":
        real_fdopen = os.fdopen

        class HalfWritten:
            def __init__(self, f):
                self.f = f

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.f.close()

            def write(self, data):
                self.f.write(data[: len(data) // 2])
                self.f.flush()
                crash()
        monkeypatch.setattr(os, "fdopen", lambda fd, mode: HalfWritten(real_fdopen(fd, mode)))
    else:
        monkeypatch.setattr(os, fails, crash)
    with pytest.raises(StateError, match="cannot write it"):
        state.save("cardio_alice", {"deptcast.all": 2})
    monkeypatch.undo()
    assert (tmp_path / "s").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_every_save_is_flushed_to_the_disk_with_its_folder(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(stat.S_ISDIR(os.fstat(fd).st_mode)) or real(fd))
    FileState(tmp_path / "s").save("cardio_alice", POSITIONS)
    assert synced == [False, True]   # the file, then the folder holding its new name
    synced.clear()
    FileState(tmp_path / "t", fsync=False).save("cardio_alice", POSITIONS)
    assert synced == []


def test_temporary_files_of_a_killed_writer_are_removed_when_the_file_is_next_used(tmp_path):
    (tmp_path / ".s.abc123.tmp").write_text("half")
    (tmp_path / ".other.abc.tmp").write_text("not ours")
    FileState(tmp_path / "s").lock()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.abc.tmp", "s.lock"]
