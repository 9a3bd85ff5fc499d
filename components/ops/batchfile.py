"""The file of ``deptcast send --batch``: JSON lines, one notice ``{"to", "message", "key"?}``
each, checked whole before anything is sent (each line bounded in size and nesting before it
is parsed; ``to`` and ``message`` by the contract's rules, the key by its own; blank lines and
lines starting with ``#`` skipped). The node still judges each item (who may send where, the
message limit): its refusals come back per item.
"""

from typing import Any, BinaryIO, Dict, List, Tuple

from components.client.calls import KEY_RULE, is_key
from components.core.errors import Refused
from components.core.jsonlimits import load_json
from components.core.messages import check_message
from components.core.targets import parse_target

#: the longest line read (a message over the node's limit is refused by the node, per item)
MAX_LINE_BYTES = 1024 * 1024
#: the fields an item may have
FIELDS = ("to", "message", "key")

#: ``(line number, item)``
Numbered = Tuple[int, Dict[str, Any]]


def check_item(value: Any) -> Dict[str, Any]:
    """One line's notice, checked.

    :raises ValueError: with what is wrong
    :rtype: dict
    """
    if not isinstance(value, dict):
        raise ValueError('not an object {"to", "message", "key"?}')
    unknown = sorted(str(k) for k in value if k not in FIELDS)
    if unknown:
        raise ValueError(f"unknown field {unknown[0][:40]!r} (an item has {', '.join(FIELDS)})")
    try:
        parse_target(value.get("to"))
        check_message(value.get("message"), MAX_LINE_BYTES)
    except Refused as e:
        raise ValueError(e.detail) from None
    item = {"to": value["to"], "message": value["message"]}
    if "key" in value:
        if not is_key(value["key"]):
            raise ValueError(f"the key is not {KEY_RULE}")
        item["key"] = value["key"]
    return item


def read_batch(stream: BinaryIO) -> Tuple[List[Numbered], List[Tuple[int, str]]]:
    """Every notice of a batch file, with its line number, and every bad line with what is
    wrong with it.

    :rtype: tuple
    """
    items: List[Numbered] = []
    problems: List[Tuple[int, str]] = []
    number = 0
    while True:
        line = stream.readline(MAX_LINE_BYTES + 1)
        if not line:
            break
        number += 1
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            problems.append((number, f"longer than {MAX_LINE_BYTES} bytes"))
            while line and not line.endswith(b"\n"):  # the rest of that line
                line = stream.readline(MAX_LINE_BYTES + 1)
            continue
        text = line.strip()
        if not text or text.startswith(b"#"):
            continue
        try:
            items.append((number, check_item(load_json(text))))
        except Refused as e:
            problems.append((number, e.detail))
        except ValueError as e:
            problems.append((number, str(e)))
    return items, problems
