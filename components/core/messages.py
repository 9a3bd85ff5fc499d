"""Send requests and envelopes: validation of ``(to, message)`` and the envelope format.

Both ``deptcast.send`` and the legacy endpoint go through :func:`check_send`,
so a frame is judged by the same rules whichever way it arrives.
"""

from typing import Any, Dict

from components.core.errors import INVALID_FRAME, NOT_AUTHORIZED, TOO_LARGE, Refused
from components.core.policy import may_send
from components.core.targets import SCOPE_ALL, SCOPE_USER, Target, parse_target
from components.core.tokens import Identity

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024


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
    try:
        size = len(message.encode("utf-8"))
    except UnicodeEncodeError:
        # JSON may escape half of a surrogate pair ("\ud835"): no UTF-8 text holds it
        raise Refused(INVALID_FRAME, "the field 'message' is not valid Unicode text (a lone surrogate)") from None
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
