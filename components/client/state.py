"""The durable position: where a restarted client resumes.

A position store is any object with ``load()`` and ``save(user, positions)``
(:class:`PositionStore`); :class:`FileState` keeps it in a small JSON file (mode 0600),
replaced atomically on every save. The rules of the file (its format, its bounds) are
:func:`components.core.statefile.parse_state` and :func:`~components.core.statefile.format_state`.
"""

import errno
import fcntl
import os
import tempfile
from pathlib import Path
from typing import Dict, Optional, Protocol, Tuple, Union

from components.core.statefile import MAX_STATE_BYTES, format_state, parse_state


#: the ending of a state file's temporary files (``.<name>.<random>.tmp`` beside it)
TEMP_SUFFIX = ".tmp"


class StateError(Exception):
    """A position store that cannot be read or written, or that belongs to another user."""


class PositionStore(Protocol):
    """Where a client keeps the last ``seq`` it handed to the application, per topic."""

    def load(self) -> Optional[Tuple[str, Dict[str, int]]]:
        """``(user key, {topic: seq})`` saved before, or ``None`` for a first start."""

    def save(self, user: str, positions: Dict[str, int]) -> None:
        """Keep ``positions`` of user ``user`` (``<dept>_<user>``); called after each envelope
        the application has finished with."""


class FileState:
    """Positions in a JSON file, written to a new temporary file beside it (a random name,
    created exclusively with mode 0600, never through a symbolic link) and renamed over it,
    so a process killed at any instant leaves the old file or the new one, never half of one.
    The file is locked while a client uses it: two clients cannot share one.

    :param path: the state file (its folder must exist)
    :param fsync: flush each save to the disk, and the folder after the rename (survives a power
        cut, not just a crash); ``False`` saves a disk write per envelope
    """

    def __init__(self, path: Union[str, "os.PathLike[str]"], fsync: bool = True) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self._lock_fd: Optional[int] = None

    def lock(self) -> None:
        """Take the file's lock (``<path>.lock``, never through a symbolic link) for this
        process, and remove temporary files a killed writer left.

        :raises StateError: if the folder is missing or another process holds the lock
        """
        if self._lock_fd is not None:
            return
        if not self.path.parent.is_dir():
            raise StateError(f"{self.path}: the folder {self.path.parent} does not exist")
        try:
            fd = os.open(str(self.path) + ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as e:
            raise StateError(f"{self.path}: cannot open its lock file ({e.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StateError(f"{self.path} is in use by another deptcast client") from None
        self._lock_fd = fd
        self._remove_leftovers()

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the lock
            self._lock_fd = None

    def load(self) -> Optional[Tuple[str, Dict[str, int]]]:
        self.lock()
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise StateError(f"{self.path} is a symbolic link; a state file must be a plain file") from None
            raise StateError(f"{self.path}: cannot read it ({e.strerror})") from None
        try:
            with os.fdopen(fd, "rb") as f:
                data = f.read(MAX_STATE_BYTES + 1)
        except OSError as e:
            raise StateError(f"{self.path}: cannot read it ({e.strerror})") from None
        try:
            return parse_state(data)
        except ValueError as e:
            raise StateError(f"{self.path}: {e}") from None

    def save(self, user: str, positions: Dict[str, int]) -> None:
        data = format_state(user, positions).encode("utf-8")
        folder = self.path.parent
        try:
            # mkstemp: a random name, O_CREAT | O_EXCL (a link planted there makes it fail,
            # never followed), mode 0600 whatever the umask
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=self._temp_prefix, suffix=TEMP_SUFFIX)
        except OSError as e:
            raise StateError(f"{self.path}: cannot write it ({e.strerror})") from None
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                if self.fsync:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, self.path)  # replaces a link at the target, never writes through it
        except OSError as e:
            _unlink_quietly(tmp)
            raise StateError(f"{self.path}: cannot write it ({e.strerror})") from None
        except BaseException:
            _unlink_quietly(tmp)
            raise
        if self.fsync:
            _fsync_folder(folder)

    @property
    def _temp_prefix(self) -> str:
        return f".{self.path.name}."

    def _remove_leftovers(self) -> None:
        """Temporary files of a writer killed between creating and renaming one (this process
        holds the lock: no other writer is at work). Unlinking never follows a link."""
        try:
            names = os.listdir(self.path.parent)
        except OSError:
            return
        for name in names:
            if name.startswith(self._temp_prefix) and name.endswith(TEMP_SUFFIX):
                _unlink_quietly(str(self.path.parent / name))


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _fsync_folder(folder: Path) -> None:
    """Flush the folder's entry of the renamed file (some file systems do not support it)."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
