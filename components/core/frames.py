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
from components.core.jsonlimits import load_json

#: the old heartbeat frame; accepted silently, no reply
PING = "ping"
#: room a frame may use beyond the message limit for the JSON around the message
#: (field names, quotes, a target, escapes of quotes and control characters)
FRAME_OVERHEAD_BYTES = 4096


#: JSON escapes a control character in six bytes (``\u0001``): the most a message can grow
#: in a WAMP JSON frame (MessagePack and CBOR carry it as it is)
JSON_ESCAPE_FACTOR = 6
#: room in a WAMP message beyond its message text (the CALL, the target, options)
WAMP_OVERHEAD_BYTES = 64 * 1024


def wamp_message_cap(max_message_bytes: int) -> int:
    """The largest WAMP message a client may send on ``/ws``: a ``deptcast.send`` call with a
    message of ``max_message_bytes`` fits in any serializer, however the message escapes.

    Crossbar's default is 16 MiB, read whole before the session has authenticated; anything
    past this cap closes the connection (WebSocket close code 1009) as soon as its length is
    known.

    :rtype: int
    """
    return JSON_ESCAPE_FACTOR * max_message_bytes + WAMP_OVERHEAD_BYTES


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


def parse_frame(payload: bytes, is_binary: bool = False, max_bytes: Optional[int] = None) -> Optional[SendFrame]:
    """Read one incoming legacy frame (or HTTP send body).

    :param payload: the frame's bytes (UTF-8 for a text frame)
    :param max_bytes: the largest frame accepted (``None``: the caller has bounded it)
    :returns: ``None`` for a ``ping`` heartbeat, else the send request; the fields are not
        judged here (``check_send`` does that, once, for every way of sending)
    :raises Refused: ``too_large`` past ``max_bytes``; ``invalid_frame`` for a binary frame,
        JSON nested deeper than :data:`~components.core.jsonlimits.MAX_DEPTH` (refused before
        it is parsed), malformed JSON, or JSON that is not an object
    :rtype: SendFrame or None
    """
    if is_binary:
        raise Refused(INVALID_FRAME, "binary frames are not supported; send JSON text frames")
    if max_bytes is not None and len(payload) > max_bytes:
        raise oversize_refusal(len(payload), max_bytes)
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(INVALID_FRAME, "the frame is not valid UTF-8") from None
    if text.strip() == PING:
        return None
    # the nesting is bounded before the parser recurses into it
    body = load_json(text)
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


def parse_send_body(body: bytes, max_bytes: Optional[int] = None) -> SendFrame:
    """Read the JSON body ``{"to": ..., "message": ...}`` of an HTTP send request.

    :raises Refused: ``too_large`` past ``max_bytes``; ``invalid_frame`` if it is not a JSON
        object (or nests too deep)
    :rtype: SendFrame
    """
    frame = parse_frame(body, max_bytes=max_bytes)
    if frame is None:
        raise Refused(INVALID_FRAME, 'the body must be a JSON object {"to": ..., "message": ...}')
    return frame
