"""The durable position: a small JSON file a restarted client resumes from
(:class:`components.client.state.FileState` reads and writes it), bounded in size and
nesting before it is parsed::

    {"deptcast_state": 1, "user": "cardio_alice",
     "positions": {"deptcast.all": 4, "deptcast.dept.cardio": 12, "deptcast.user.cardio_alice": 0}}
"""

import json
from typing import Dict, Mapping, Tuple

from components.core import names
from components.core.jsonlimits import nesting_depth
from components.core.recovery import MAX_SEQ

#: the largest state file read
MAX_STATE_BYTES = 64 * 1024
#: the deepest nesting of JSON read from a state file
MAX_STATE_DEPTH = 4
STATE_FORMAT = 1


def format_state(user: str, positions: Mapping[str, int]) -> str:
    """The text of a state file: the user key and its positions.

    :rtype: str
    """
    return json.dumps({"deptcast_state": STATE_FORMAT, "user": user,
                       "positions": dict(sorted(positions.items()))}, indent=1) + "\n"


def parse_state(data: bytes) -> Tuple[str, Dict[str, int]]:
    """Read a state file written by :func:`format_state`.

    :returns: ``(user key, {topic: position})``
    :raises ValueError: with a readable reason if it is not one (too large, too deeply
        nested, not JSON, wrong fields)
    :rtype: tuple
    """
    if len(data) > MAX_STATE_BYTES:
        raise ValueError(f"it has {len(data)} bytes; a state file has at most {MAX_STATE_BYTES}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("it is not UTF-8 text") from None
    if nesting_depth(text) > MAX_STATE_DEPTH:
        raise ValueError(f"its JSON nests deeper than {MAX_STATE_DEPTH} levels")
    try:
        body = json.loads(text)
    except ValueError as e:
        raise ValueError(f"it is not JSON ({getattr(e, 'msg', e)})") from None
    if not isinstance(body, dict) or body.get("deptcast_state") != STATE_FORMAT:
        raise ValueError(f'it is not a deptcast state file (no "deptcast_state": {STATE_FORMAT})')
    user = body.get("user")
    if not isinstance(user, str) or names.parse_user_key(user) is None:
        raise ValueError('its "user" is not a user key <dept>_<user>')
    positions = body.get("positions")
    if not isinstance(positions, dict):
        raise ValueError('its "positions" is not an object {topic: seq}')
    checked: Dict[str, int] = {}
    for topic, seq in positions.items():
        if not isinstance(topic, str) or not topic.startswith("deptcast.") or len(topic) > 200:
            raise ValueError(f"{str(topic)[:80]!r} is not a deptcast topic")
        if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= MAX_SEQ:
            raise ValueError(f"the position of {topic} is not a whole number 0 or more")
        checked[topic] = seq
    return user, checked
