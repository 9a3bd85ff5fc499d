"""Message ids and the arguments of ``deptcast.history``, as plain functions."""

from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

from components.core.errors import INVALID_FRAME, NOT_AUTHORIZED, Refused
from components.core.frames import JSON_ESCAPE_FACTOR, WAMP_OVERHEAD_BYTES, wamp_message_cap
from components.core.messages import DEFAULT_MAX_MESSAGE_BYTES

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
    # ASCII digits only: str.isdigit() is also true for "²", which int() refuses
    if isinstance(after, str) and after.isascii() and after.isdigit() and len(after) <= ID_WIDTH:
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


#: the most bytes one envelope may take in a WAMP message beyond its message text: JSON
#: escaping aside, its other fields (ids, names, numbers, keys) are a few hundred bytes
ENVELOPE_OVERHEAD_BYTES = 512


def envelope_bytes(message: str) -> int:
    """The most bytes an envelope holding ``message`` takes in any serializer (JSON escapes a
    control character in six bytes).

    :rtype: int
    """
    return JSON_ESCAPE_FACTOR * len(message.encode("utf-8")) + ENVELOPE_OVERHEAD_BYTES


def answer_cap(max_message_bytes: int) -> int:
    """The most bytes of envelopes one history answer carries: what fits in one WAMP message
    on ``/ws`` (:func:`~components.core.frames.wamp_message_cap`, which the router applies to
    what it sends too), less room for the RESULT around them. A single envelope of the largest
    message always fits.

    :rtype: int
    """
    return wamp_message_cap(max_message_bytes) - WAMP_OVERHEAD_BYTES // 2


#: the answer bound at the default message limit (64 KiB): 416 KiB
DEFAULT_MAX_BYTES = answer_cap(DEFAULT_MAX_MESSAGE_BYTES)


@dataclass(frozen=True)
class HistoryRequest:
    """One ``deptcast.history`` call, checked.

    :ivar topics: the reader's topics (its department, ``All``, its own direct messages)
    :ivar after: the id after which to read (``after`` mode)
    :ivar positions: topic to the last ``seq`` the reader has (``positions`` mode), or ``None``
    :ivar limit: most envelopes in the answer
    :ivar latest: the newest ``limit`` rather than the oldest (``after`` mode only)
    :ivar max_bytes: most bytes of envelopes in the answer, as :func:`envelope_bytes` counts
        them (at least one envelope is returned)
    """

    topics: Tuple[str, ...]
    after: int = 0
    positions: Optional[Dict[str, int]] = None
    limit: int = DEFAULT_PAGE
    latest: bool = False
    max_bytes: int = DEFAULT_MAX_BYTES


#: the largest position: a ``seq`` is stored in a signed 64-bit column
MAX_POSITION = 2 ** 63 - 1


def parse_positions(positions: Any, topics: Sequence[str]) -> Optional[Dict[str, int]]:
    """Read the ``positions`` argument: ``None``, or ``{topic: last seq the client has}`` for
    some of the reader's ``topics``.

    :raises Refused: ``invalid_frame`` if malformed, ``not_authorized`` for a topic the
        reader may not read
    :rtype: dict or None
    """
    if positions is None:
        return None
    if not isinstance(positions, dict) or not positions:
        raise Refused(INVALID_FRAME, "'positions' must be an object {topic: last seq you have}")
    checked: Dict[str, int] = {}
    for topic, seq in positions.items():
        if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= MAX_POSITION:
            raise Refused(INVALID_FRAME, "each position must be a whole number from 0 to 2**63-1 (the last seq "
                                         "you have)")
        if topic not in topics:
            shown = topic[:80] if isinstance(topic, str) else repr(topic)[:80]
            raise Refused(NOT_AUTHORIZED, f"history covers your department, All and your own direct "
                                          f"messages; not {shown!r}")
        checked[topic] = seq
    return checked


def history_request(topics: Sequence[str], after: Any = None, limit: Any = DEFAULT_PAGE, latest: Any = False,
                    positions: Any = None, cap: int = 1000, max_bytes: int = DEFAULT_MAX_BYTES) -> HistoryRequest:
    """Check the arguments of ``deptcast.history`` for a reader of ``topics``.

    :param cap: the largest ``limit`` the node allows
    :raises Refused: ``invalid_frame`` or ``not_authorized``
    :rtype: HistoryRequest
    """
    after_id = parse_after(after)
    page = parse_limit(limit, cap)
    newest = parse_latest(latest)
    wanted = parse_positions(positions, topics)
    if wanted is not None and (after_id or newest):
        raise Refused(INVALID_FRAME, "give 'positions', or 'after'/'latest', not both")
    return HistoryRequest(tuple(topics), after_id, wanted, page, newest, max_bytes)
