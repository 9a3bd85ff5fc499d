"""Where a message goes: the ``to`` field of a send, read into a :class:`Target`."""

from dataclasses import dataclass
from typing import Optional

from components.core import names
from components.core.errors import INVALID_FRAME, Refused

SCOPE_DEPT = "dept"
SCOPE_ALL = "all"
SCOPE_USER = "user"


@dataclass(frozen=True)
class Target:
    """Where a message goes.

    :ivar scope: ``dept``, ``all`` or ``user``
    :ivar target: the department code, ``All``, or the user key ``<dept>_<user>``
    :ivar dept: the department of a ``dept`` or ``user`` target, else ``None``
    :ivar user: the user id of a ``user`` target, else ``None``
    """

    scope: str
    target: str
    dept: Optional[str] = None
    user: Optional[str] = None

    @property
    def topic(self) -> str:
        if self.scope == SCOPE_ALL:
            return names.TOPIC_ALL
        assert self.dept is not None  # parse_target sets it for a dept or user target
        if self.scope == SCOPE_USER:
            assert self.user is not None
            return names.user_topic(self.dept, self.user)
        return names.dept_topic(self.dept)


def parse_target(to: object) -> Target:
    """Read the ``to`` field: a department code, ``"All"`` or ``<dept>_<user>``.

    :raises Refused: ``invalid_frame`` if it is none of these
    :rtype: Target
    """
    if to is None:
        raise Refused(INVALID_FRAME, "the field 'to' is missing")
    if not isinstance(to, str):
        raise Refused(INVALID_FRAME, "the field 'to' must be a string")
    if not to:
        raise Refused(INVALID_FRAME, "the field 'to' is empty")
    if to == names.ALL:
        return Target(SCOPE_ALL, names.ALL)
    if "_" in to:
        parsed = names.parse_user_key(to)
        if parsed is None:
            raise Refused(INVALID_FRAME, f"'to' is not a valid user key <dept>_<user>: {to[:80]!r}")
        dept, user = parsed
        return Target(SCOPE_USER, to, dept=dept, user=user)
    if not names.is_name(to):
        raise Refused(INVALID_FRAME, f"'to' is not a valid department code: {to[:80]!r}")
    return Target(SCOPE_DEPT, to, dept=to)


def envelope_topic(envelope: dict) -> str:
    """The topic an envelope was published on (its ``target`` read as a ``to``).

    :raises Refused: if the envelope's target is malformed
    :rtype: str
    """
    return parse_target(envelope.get("target")).topic
