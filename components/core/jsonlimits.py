"""JSON from clients, parsed only after its size and nesting depth are bounded.

In a Crossbar process the recursion limit is 100,000 (a dependency, ``py_ecc``, raises it at
import), so ``json.loads`` on a document nested a few ten thousand levels deep overflows the C
stack and kills the router worker instead of raising ``RecursionError``. Every JSON document
a client sends (legacy frames, HTTP bodies, the dev sign-in form) therefore goes through
:func:`load_json`: the size is checked first, then the nesting depth with a scan that runs in
the regular expression engine (strings are skipped, brackets counted), and only then is it
parsed. A real request nests one level (``{"to": ..., "message": ...}``).
"""

import json
import re
from itertools import accumulate
from typing import Any, Optional, Union, cast

from components.core.errors import INVALID_FRAME, TOO_LARGE, Refused

#: the deepest nesting a client's JSON may have; deptcast's own documents nest one level
MAX_DEPTH = 16
#: the deepest nesting of a WAMP message in JSON: a HELLO's details nest five levels, a call's
#: arguments as deep as an application needs; far below what costs the decoder anything
WAMP_MAX_DEPTH = 64

# A JSON string: a quote, then anything but quotes and backslashes or an escaped character,
# then the closing quote. An unterminated string runs to the end of the text (a lone trailing
# backslash included), so every quote that starts a string matches once and the scan stays
# linear. Possessive quantifiers: no backtracking.
_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)', re.S)
_NOT_BRACKET = re.compile(r"[^\[\]{}]++")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def nesting_depth(text: str) -> int:
    """How deep ``json.loads`` could recurse on ``text``: the most brackets open at once
    outside strings, counted from the start.

    For valid JSON it is the document's nesting depth (``0`` for a scalar). For anything else
    it is never less than the depth the parser reaches before it finds the error, so a text
    that passes :func:`check_depth` is safe to hand to ``json.loads``.

    :rtype: int
    """
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    opens = brackets.count("[") + brackets.count("{")
    if opens <= 1:
        return opens
    return max(accumulate(map(_STEP.__getitem__, brackets), initial=0))


def check_depth(text: str, max_depth: int = MAX_DEPTH) -> None:
    """Refuse ``text`` if it nests deeper than ``max_depth``.

    :raises Refused: ``invalid_frame``
    """
    depth = nesting_depth(text)
    if depth > max_depth:
        raise Refused(INVALID_FRAME, f"the JSON nests {depth} levels deep; at most {max_depth} are accepted")


def load_json(data: Union[bytes, str], max_bytes: Optional[int] = None, max_depth: int = MAX_DEPTH) -> Any:
    """Parse a client's JSON document after bounding its size and depth.

    :param data: UTF-8 bytes (or text) as the client sent them
    :param max_bytes: the most bytes accepted (UTF-8 for text); ``None``: the caller bounded
        the size already
    :raises Refused: ``too_large`` past ``max_bytes``; ``invalid_frame`` if it is not UTF-8,
        nests deeper than ``max_depth``, or is not JSON (numbers Python will not convert
        included)
    :rtype: object
    """
    text = data if isinstance(data, str) else None
    if max_bytes is not None:
        size = len(data) if text is None or text.isascii() else len(text.encode("utf-8", "surrogatepass"))
        if size > max_bytes:
            raise Refused(TOO_LARGE, f"the JSON has {size} bytes; at most {max_bytes} are accepted")
    if text is None:
        try:
            text = cast(bytes, data).decode("utf-8")  # text is None: data is bytes
        except UnicodeDecodeError:
            raise Refused(INVALID_FRAME, "the JSON is not valid UTF-8") from None
    check_depth(text, max_depth)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise Refused(INVALID_FRAME, f"not JSON ({e.msg} at position {e.pos})") from None
    except ValueError as e:
        # int() refuses numbers of more than 4300 digits with a plain ValueError
        raise Refused(INVALID_FRAME, f"not JSON deptcast accepts ({str(e)[:80]})") from None
