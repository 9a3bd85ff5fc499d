"""Safe retries: the ``key`` of a send, what the store keeps of it, and what a send may be
answered (pure logic).

The same sender (department and user) with the same key within :data:`KEY_WINDOW_MS` gets
the first envelope back and nothing is stored again; the same key with another ``to`` or
``message`` is refused. The store enforces it: a key row is written in the same transaction
as its message, under a unique constraint.
"""

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Dict, Optional

from components.core.errors import INVALID_FRAME, Refused
from components.core.targets import Target
from components.core.tokens import Identity

#: how long a key is kept (ms): a day, whatever retention keeps of the messages themselves
KEY_WINDOW_MS = 24 * 3600 * 1000
#: 1-64 letters, digits, ``-``, ``_`` or ``.``
_KEY_RE = re.compile(r"[A-Za-z0-9._\-]{1,64}")


def check_key(key: Any) -> Optional[str]:
    """``key`` if it is a valid send key, ``None`` if there is none.

    :raises Refused: ``invalid_frame`` for a malformed key
    :rtype: str or None
    """
    if key is None:
        return None
    if not isinstance(key, str) or _KEY_RE.fullmatch(key) is None:
        raise Refused(INVALID_FRAME, "key must be 1-64 letters, digits, '-', '_' or '.'")
    return key


def fingerprint(target: Target, message: str) -> str:
    """What a retry must repeat exactly: the target and the message (a digest).

    :rtype: str
    """
    digest = hashlib.sha256()
    digest.update(f"{target.scope}\0{target.target}\0".encode())
    digest.update(message.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def key_conflict(key: str) -> Refused:
    """The refusal of a key used before for another notice."""
    return Refused(INVALID_FRAME, f"the key {key!r} was used for another notice (another to or message)")


@dataclass(frozen=True)
class Outgoing:
    """One message to store: where, from whom, what, when, and its key (if any)."""

    target: Target
    sender: Identity
    message: str
    ts: int
    key: Optional[str] = None

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.target, self.message)


@dataclass(frozen=True)
class Stored:
    """What the store made of one :class:`Outgoing`.

    :ivar envelope: the envelope (the first one of its key when ``fresh`` is false); ``None``
        when the key was used for another notice
    :ivar fresh: stored now (to be published); else the key's first envelope, or a conflict
    """

    envelope: Optional[Dict[str, Any]]
    fresh: bool

    @property
    def conflict(self) -> bool:
        return self.envelope is None
