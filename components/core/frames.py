"""JSON send frames ``{"to": ..., "message": ...}``, as the legacy endpoint and the HTTP API read them.

What a frame *means* is not judged here: ``to`` and ``message`` go unchanged to the one send
path, which runs :func:`components.core.messages.check_send` exactly as ``deptcast.send``
does. This module only decides whether a frame is a ping, a JSON object, or something that
can never be a send request.
"""

import json
from dataclasses import dataclass
from typing import Any, Optional

from components.core.errors import INVALID_FRAME, TOO_LARGE, Refused

#: the old heartbeat frame; accepted silently, no reply
PING = "ping"
#: room a frame may use beyond the message limit for the JSON around the message
#: (field names, quotes, a target, escapes of quotes and control characters)
FRAME_OVERHEAD_BYTES = 4096


def frame_cap(max_message_bytes: int) -> int:
    """The largest frame the endpoint reads: twice the message limit plus JSON overhead.

    A JSON frame holding a message of ``max_message_bytes`` fits unless most of the message
    must be escaped; larger frames are discarded as they arrive (never buffered) and answered
    with ``too_large``.

    :rtype: int
    """
    return 2 * max_message_bytes + FRAME_OVERHEAD_BYTES


@dataclass(frozen=True)
class SendFrame:
    """A frame asking to send: ``to`` and ``message`` exactly as the client wrote them."""

    to: Any
    message: Any


def parse_frame(payload: bytes, is_binary: bool = False) -> Optional[SendFrame]:
    """Read one incoming legacy frame.

    :param payload: the frame's bytes (UTF-8 for a text frame)
    :returns: ``None`` for a ``ping`` heartbeat, else the send request; the fields are not
        judged here (``check_send`` does that, once, for every way of sending)
    :raises Refused: ``invalid_frame`` for a binary frame, malformed JSON, or JSON that is not
        an object
    :rtype: SendFrame or None
    """
    if is_binary:
        raise Refused(INVALID_FRAME, "binary frames are not supported; send JSON text frames")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(INVALID_FRAME, "the frame is not valid UTF-8") from None
    if text.strip() == PING:
        return None
    try:
        body = json.loads(text)
    except ValueError as e:
        raise Refused(INVALID_FRAME, f"the frame is not JSON ({e.msg} at position {e.pos})") from None
    if not isinstance(body, dict):
        raise Refused(INVALID_FRAME, 'the frame must be a JSON object {"to": ..., "message": ...}')
    return SendFrame(to=body.get("to"), message=body.get("message"))


def oversize_refusal(size: int, cap: int) -> Refused:
    """The refusal of a frame larger than :func:`frame_cap`.

    :rtype: Refused
    """
    return Refused(TOO_LARGE, f"the frame has at least {size} bytes; frames may have at most {cap}")


def error_frame(uri: str, detail: str) -> bytes:
    """The JSON error frame ``{"error": <uri>, "detail": <text>}``, UTF-8 encoded.

    :rtype: bytes
    """
    return json.dumps({"error": uri, "detail": detail}, ensure_ascii=False).encode("utf-8")


def parse_send_body(body: bytes) -> SendFrame:
    """Read the JSON body ``{"to": ..., "message": ...}`` of an HTTP send request.

    :raises Refused: ``invalid_frame`` if it is not a JSON object
    :rtype: SendFrame
    """
    frame = parse_frame(body)
    if frame is None:
        raise Refused(INVALID_FRAME, 'the body must be a JSON object {"to": ..., "message": ...}')
    return frame
