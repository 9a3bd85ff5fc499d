"""Send requests and envelopes: validation of ``(to, message)`` and the envelope format.

Both ``deptcast.send`` and the legacy endpoint go through :func:`check_send`,
so a frame is judged by the same rules whichever way it arrives.
"""

from dataclasses import dataclass
from typing import Any, Dict, Optional

from components import names
from components.errors import INVALID_FRAME, NOT_AUTHORIZED, TOO_LARGE, Refused
from components.policy import may_send
from components.tokens import Identity

SCOPE_DEPT = "dept"
SCOPE_ALL = "all"
SCOPE_USER = "user"

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024


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
        if self.scope == SCOPE_USER:
            return names.user_topic(self.user)
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


def check_message(message: object, max_bytes: int) -> str:
    """Read the ``message`` field: a non-empty string of at most ``max_bytes`` UTF-8 bytes.

    :raises Refused: ``invalid_frame`` or ``too_large``
    :rtype: str
    """
    if message is None:
        raise Refused(INVALID_FRAME, "the field 'message' is missing")
    if not isinstance(message, str):
        raise Refused(INVALID_FRAME, "the field 'message' must be a string")
    if not message:
        raise Refused(INVALID_FRAME, "the field 'message' is empty")
    size = len(message.encode("utf-8"))
    if size > max_bytes:
        raise Refused(TOO_LARGE, f"the message has {size} bytes; the limit is {max_bytes}")
    return message


def check_send(identity: Identity, to: object, message: object,
               max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Target:
    """Validate and authorize one send request.

    :raises Refused: ``invalid_frame``, ``too_large`` or ``not_authorized``
    :rtype: Target
    """
    target = parse_target(to)
    check_message(message, max_bytes)
    if not may_send(identity, target):
        if target.scope == SCOPE_ALL:
            reason = "only publishers may send to All"
        elif target.scope == SCOPE_USER:
            reason = f"a member may only message users of its own department ({identity.dept})"
        else:
            reason = f"a member may only send to its own department ({identity.dept})"
        raise Refused(NOT_AUTHORIZED, reason)
    return target


def make_envelope(msg_id: str, target: Target, sender: Identity, message: str, ts: int,
                  **extra: Any) -> Dict[str, Any]:
    """The event payload every subscriber receives.

    :param extra: further fields (clients ignore fields they do not know)
    :rtype: dict
    """
    envelope = {
        "id": msg_id,
        "scope": target.scope,
        "target": target.target,
        "sender": sender.user,
        "sender_dept": sender.dept,
        "message": message,
        "ts": ts,
    }
    envelope.update(extra)
    return envelope
