"""The durable position: where a restarted client resumes.

A position store is any object with ``load()`` and ``save(user, positions)``
(:class:`PositionStore`); :class:`FileState` keeps it in a small JSON file, replaced
atomically on every save. The rules of the file (its format, its bounds) are
:func:`components.core.statefile.parse_state` and :func:`~components.core.statefile.format_state`.
"""

import fcntl
import os
from pathlib import Path
from typing import Dict, Optional, Protocol, Tuple, Union

from components.core.statefile import MAX_STATE_BYTES, format_state, parse_state


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
    """Positions in a JSON file, written to a temporary file beside it and renamed over it,
    so a process killed at any instant leaves the old file or the new one, never half of one.
    The file is locked while a client uses it: two clients cannot share one.

    :param path: the state file (its folder must exist)
    :param fsync: also flush each save to the disk (survives a power cut, not just a crash;
        costs a disk write per envelope)
    """

    def __init__(self, path: Union[str, "os.PathLike[str]"], fsync: bool = False) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self._lock_fd: Optional[int] = None

    def lock(self) -> None:
        """Take the file's lock (``<path>.lock``) for this process.

        :raises StateError: if the folder is missing or another process holds the lock
        """
        if self._lock_fd is not None:
            return
        if not self.path.parent.is_dir():
            raise StateError(f"{self.path}: the folder {self.path.parent} does not exist")
        try:
            fd = os.open(str(self.path) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise StateError(f"{self.path}: cannot open its lock file ({e.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StateError(f"{self.path} is in use by another deptcast client") from None
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the lock
            self._lock_fd = None

    def load(self) -> Optional[Tuple[str, Dict[str, int]]]:
        self.lock()
        try:
            with open(self.path, "rb") as f:
                data = f.read(MAX_STATE_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StateError(f"{self.path}: cannot read it ({e.strerror})") from None
        try:
            return parse_state(data)
        except ValueError as e:
            raise StateError(f"{self.path}: {e}") from None

    def save(self, user: str, positions: Dict[str, int]) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(format_state(user, positions))
                if self.fsync:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as e:
            raise StateError(f"{self.path}: cannot write it ({e.strerror})") from None
