"""Message ids and the arguments of ``deptcast.history``, as plain functions."""

from typing import Any

from components.core.errors import INVALID_FRAME, Refused

#: width of a message id: zero-padded decimal, so ids sort as strings in send order
ID_WIDTH = 16
#: the page size when the caller gives no ``limit``
DEFAULT_PAGE = 100


def format_id(n: int) -> str:
    """The envelope ``id`` of the message numbered ``n``.

    :rtype: str
    """
    return f"{n:0{ID_WIDTH}d}"


def parse_after(after: object) -> int:
    """Read the ``after`` argument of ``deptcast.history``: ``None`` or a message id.

    :raises Refused: ``invalid_frame`` if it is neither
    :rtype: int
    """
    if after is None or after == "":
        return 0
    if isinstance(after, str) and after.isdigit() and len(after) <= ID_WIDTH:
        return int(after)
    raise Refused(INVALID_FRAME, "'after' must be a message id as returned in an envelope's 'id'")


def parse_limit(limit: Any, cap: int) -> int:
    """Read the ``limit`` argument: a positive whole number, capped at ``cap``.

    :raises Refused: ``invalid_frame`` otherwise
    :rtype: int
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise Refused(INVALID_FRAME, "'limit' must be a positive whole number")
    return min(limit, cap)


def parse_latest(latest: Any) -> bool:
    """Read the ``latest`` argument: ``true`` or ``false``.

    :raises Refused: ``invalid_frame`` otherwise
    :rtype: bool
    """
    if not isinstance(latest, bool):
        raise Refused(INVALID_FRAME, "'latest' must be true or false")
    return latest
