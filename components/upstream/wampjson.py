"""WAMP's JSON serialization, its nesting bounded before it is parsed (one patch:
``wampjson.depth``).

Autobahn decodes WAMP's JSON serialization with the pure-Python scanner of the standard
library. Under Crossbar's recursion limit of 100,000 a single unauthenticated ``/ws`` frame of
120,000 ``[`` is not refused by a ``RecursionError`` until the router has spent seconds of CPU
on it and logged a traceback of tens of megabytes (measured: 3 s of CPU, 43 MB of log, the
close after 30 s). MessagePack and CBOR bound their nesting themselves (both refuse a few
hundred levels at once). So the worker's JSON decoder checks the depth first
(:func:`components.core.jsonlimits.check_depth`); a deeper message is a protocol error and
closes that connection at once, as any malformed WAMP message does.

Autobahn's ``JsonObjectSerializer.unserialize`` calls the module function ``_loads`` for every
message, and Autobahn's ``Serializer.unserialize`` turns any exception it raises into a
``ProtocolError``; the patch puts a ``_loads`` in its place that raises
:class:`~components.core.errors.Refused` (``invalid_frame``) for a message too deep.
"""

from typing import Any, Callable, Optional

from autobahn.wamp import serializer

from components.core.jsonlimits import WAMP_MAX_DEPTH, check_depth
from components.upstream.registry import Patch, Wiring, register, replace


def bounded(loads: Callable[..., Any], max_depth: int = WAMP_MAX_DEPTH) -> Callable[..., Any]:
    """``loads`` that first refuses a text nested deeper than ``max_depth``.

    :raises Refused: ``invalid_frame``, for a text nested too deep
    """
    def bounded_loads(s, *args, **kwargs):
        text = s if isinstance(s, str) else bytes(s).decode("utf-8", "replace")
        # a text cannot nest deeper than it has brackets that open: counting them (in C) spares
        # the scan for nearly every message (a CALL has a handful)
        if text.count("[") + text.count("{") > max_depth:
            check_depth(text, max_depth)
        return loads(s, *args, **kwargs)

    setattr(bounded_loads, "deptcast_max_depth", max_depth)  # noqa: B010 (tests read it; typed, a function has no such attribute)
    return bounded_loads


def _shape(wiring: Wiring) -> Optional[str]:
    if not callable(getattr(serializer, "_loads", None)):
        return "autobahn.wamp.serializer has no _loads"
    return None


def _bound_wamp_json(wiring: Wiring) -> None:
    replace("autobahn.wamp.serializer._loads", serializer, "_loads", bounded(serializer._loads))


DEPTH = register(Patch(
    name="wampjson.depth",
    replaces=("autobahn.wamp.serializer._loads",),
    checked={
        "autobahn.wamp.serializer._loads":
            "6c8bc5154789fcbf6375aa5b04be497e947d9a3a2eb6e8358587f19c89fb0889",
        # the one caller, per message of a JSON connection
        "autobahn.wamp.serializer.JsonObjectSerializer.unserialize":
            "322882e6b62536b2c2c65d2b343c773d8765a0d90ac56668447a0635e700097a",
        # what turns the refusal into a protocol error (the connection closes at once)
        "autobahn.wamp.serializer.Serializer.unserialize":
            "946a40c680049c3d75dce39568ec99d3a1bc030aac90fa5f09e32622072a3047",
    },
    why="Autobahn parses WAMP JSON with the pure-Python scanner: under Crossbar's recursion limit of 100,000 "
        "one unauthenticated frame of 120,000 '[' costs the router 3 s of CPU and 43 MB of traceback before it "
        "is refused; a guard, on /ws of every node whatever else the node config mounts",
    remove_when="Autobahn bounds the nesting of WAMP JSON (as its MessagePack and CBOR decoders do)",
    apply=_bound_wamp_json,
    shape=_shape,
))

#: the one patch of this area
PATCHES = (DEPTH,)

__all__ = ["DEPTH", "PATCHES", "bounded"]
