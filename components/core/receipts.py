"""Receipts and the roster, as plain rules: who is in a notice's audience, who may
acknowledge it and who may ask about it, and the arguments of ``deptcast.ack``,
``deptcast.receipts``, ``deptcast.recipients``, ``deptcast.roster`` and the roster's operator
procedures.

The *audience* of a notice: a department notice, the members on that department's roster;
``All``, every roster member; a direct notice, its one user. The sender is never in it. The
store counts the roster side (it is not materialised per notice); these rules decide, per
acknowledgement, whether the caller can be in the audience at all.
"""

from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple

from components.core import names
from components.core.errors import INVALID_FRAME, NOT_AUTHORIZED, Refused
from components.core.history import ID_WIDTH
from components.core.targets import SCOPE_ALL, SCOPE_DEPT, SCOPE_USER
from components.core.tokens import Identity

#: the most ids one ``deptcast.ack`` call takes (the shipped clients send at most 1,000)
ACK_MAX = 1000
#: the most rows one ``deptcast.admin.roster_import`` call takes
IMPORT_MAX = 1000
#: the page size of ``deptcast.recipients`` when the caller gives no ``limit``, and its cap
RECIPIENTS_PAGE = 200
RECIPIENTS_CAP = 1000

#: how a roster entry came: the user signed in with the member role, or an operator imported it
SIGNED_IN = "signed_in"
IMPORTED = "imported"

ACK_STATES = (names.DELIVERED, names.SEEN)


@dataclass(frozen=True)
class Notice:
    """What receipts need of a stored notice.

    :ivar id: the message number (the envelope's ``id`` as an int)
    :ivar scope: ``dept``, ``all`` or ``user``
    :ivar dept: the target department (``dept`` and ``user`` notices)
    :ivar user: the target user (``user`` notices)
    """

    id: int
    scope: str
    dept: Optional[str]
    user: Optional[str]
    sender_dept: str
    sender: str

    @property
    def sender_key(self) -> str:
        return names.user_key(self.sender_dept, self.sender)


def is_staff(identity: Identity) -> bool:
    """Whether ``identity`` may do what a publisher may (publishers and admins).

    :rtype: bool
    """
    return identity.role in (names.PUBLISHER, names.ADMIN)


def in_audience(notice: Notice, dept: str, user: str) -> bool:
    """Whether the user (``dept``, ``user``) can be in the notice's audience: it may see the
    notice and did not send it (a department or ``All`` notice counts it only while it is on
    the roster, which the store checks).

    :rtype: bool
    """
    if dept == notice.sender_dept and user == notice.sender:
        return False
    if notice.scope == SCOPE_ALL:
        return True
    if notice.scope == SCOPE_DEPT:
        return dept == notice.dept
    if notice.scope == SCOPE_USER:
        return dept == notice.dept and user == notice.user
    return False


def may_ask(identity: Identity, notice: Notice) -> bool:
    """Whether ``identity`` may read the notice's receipts: its sender and admins; for
    department and ``All`` notices also publishers.

    :rtype: bool
    """
    if identity.role == names.ADMIN:
        return True
    if identity.dept == notice.sender_dept and identity.user == notice.sender:
        return True
    return identity.role == names.PUBLISHER and notice.scope in (SCOPE_DEPT, SCOPE_ALL)


def may_read_roster(identity: Identity, dept: str) -> bool:
    """Members their own department; publishers and admins any.

    :rtype: bool
    """
    return is_staff(identity) or dept == identity.dept


def parse_notice_id(value: object) -> int:
    """A notice id (the envelope's ``id``) as its number.

    :raises Refused: ``invalid_frame``
    :rtype: int
    """
    number = id_number(value)
    if number is None:
        raise Refused(INVALID_FRAME, "the id must be a notice id as returned in an envelope's 'id'")
    return number


def id_number(value: object) -> Optional[int]:
    """The number of an envelope id, or ``None`` if ``value`` is not one.

    :rtype: int or None
    """
    if isinstance(value, str) and 0 < len(value) <= ID_WIDTH and value.isascii() and value.isdigit():
        number = int(value)
        return number if number > 0 else None
    return None


def parse_ack(ids: Any, state: Any) -> Tuple[List[int], str]:
    """The arguments of ``deptcast.ack``: the ids' numbers (malformed ids are ignored, as ids
    the caller may not see are) and the state.

    :raises Refused: ``invalid_frame`` for a state that is not ``delivered`` or ``seen``, or
        ids that are not a list of at most :data:`ACK_MAX`
    :rtype: tuple
    """
    if state not in ACK_STATES:
        raise Refused(INVALID_FRAME, f"'state' must be one of {', '.join(ACK_STATES)}")
    if not isinstance(ids, (list, tuple)):
        raise Refused(INVALID_FRAME, "'ids' must be a list of notice ids")
    if len(ids) > ACK_MAX:
        raise Refused(INVALID_FRAME, f"at most {ACK_MAX} ids in one call")
    numbers = {n for n in (id_number(v) for v in ids) if n is not None}
    return sorted(numbers), state


def parse_recipients(state: Any, after: Any, limit: Any) -> Tuple[str, Optional[Tuple[str, str]], int]:
    """The arguments of ``deptcast.recipients`` after the id: the state, the cursor (the
    ``(dept, user)`` the previous page ended with) and the page size.

    :raises Refused: ``invalid_frame``
    :rtype: tuple
    """
    if state not in names.RECIPIENT_STATES:
        raise Refused(INVALID_FRAME, f"'state' must be one of {', '.join(names.RECIPIENT_STATES)}")
    cursor: Optional[Tuple[str, str]] = None
    if after is not None and after != "":
        cursor = names.parse_user_key(after) if isinstance(after, str) else None
        if cursor is None:
            raise Refused(INVALID_FRAME, "'after' must be the 'next' of the previous page")
    if limit is None:
        limit = RECIPIENTS_PAGE
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise Refused(INVALID_FRAME, "'limit' must be a positive whole number")
    return state, cursor, min(limit, RECIPIENTS_CAP)


def next_cursor(users: Sequence[Tuple[str, str, Any]], limit: int) -> Optional[str]:
    """The ``next`` of a page: the last user's key when the page is full (there may be more).

    :rtype: str or None
    """
    if len(users) < limit or not users:
        return None
    dept, user, _ = users[-1]
    return names.user_key(dept, user)


def parse_dept(dept: Any) -> str:
    """A department code (not ``All``).

    :raises Refused: ``invalid_frame``
    :rtype: str
    """
    if not names.is_name(dept) or dept == names.ALL:
        raise Refused(INVALID_FRAME, f"'dept' must be a department code ({names.NAME_RULE})")
    return dept


def parse_import(rows: Any) -> List[Tuple[str, str]]:
    """The rows of ``deptcast.admin.roster_import``: ``[dept, user]`` pairs, without repeats.

    :raises Refused: ``invalid_frame`` naming the first bad row
    :rtype: list
    """
    if not isinstance(rows, (list, tuple)):
        raise Refused(INVALID_FRAME, "'rows' must be a list of [dept, user]")
    if len(rows) > IMPORT_MAX:
        raise Refused(INVALID_FRAME, f"at most {IMPORT_MAX} rows in one call")
    out: List[Tuple[str, str]] = []
    known = set()
    for n, row in enumerate(rows):
        if (not isinstance(row, (list, tuple)) or len(row) != 2 or not names.is_name(row[0])
                or row[0] == names.ALL or not names.is_name(row[1])):
            raise Refused(INVALID_FRAME, f"row {n + 1} is not [dept, user] ({names.NAME_RULE})")
        pair = (row[0], row[1])
        if pair not in known:
            known.add(pair)
            out.append(pair)
    return out


def parse_member_key(value: Any) -> Tuple[str, str]:
    """A user key ``<dept>_<user>`` as the pair.

    :raises Refused: ``invalid_frame``
    :rtype: tuple
    """
    pair = names.parse_user_key(value) if isinstance(value, str) else None
    if pair is None or pair[0] == names.ALL:
        raise Refused(INVALID_FRAME, "expected a user key <dept>_<user>")
    return pair


def not_yours(notice_id: Any) -> Refused:
    """The refusal of a question about a notice the caller may not ask about (or that does
    not exist: the answer does not tell which)."""
    return Refused(NOT_AUTHORIZED, "only the sender of a notice (and admins; publishers for department and All "
                                   "notices) may read its receipts")


def counts_of(notice_id: str, audience: int, seen: int, delivered: int) -> dict:
    """The answer of ``deptcast.receipts`` (and the live event): disjoint counts.

    :rtype: dict
    """
    audience = max(audience, 0)
    seen = min(max(seen, 0), audience)
    delivered = min(max(delivered, 0), audience - seen)
    return {"id": notice_id, "audience": audience, "seen": seen, "delivered": delivered,
            "pending": audience - seen - delivered}
