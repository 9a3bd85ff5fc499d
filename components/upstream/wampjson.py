"""WAMP's JSON serialization: its nesting bounded before it is parsed, and parsed by the C
scanner (two patches: ``wampjson.depth``, ``wampjson.c_scanner``).

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

``wampjson.c_scanner``: Autobahn's ``_loads`` builds a new decoder for every message, with the
standard library's pure-Python scanner (``json.scanner.py_make_scanner``) and a Python hook on
every string, so that a string starting with a NUL (``"\\u0000..."``, WAMP JSON's form of binary
data) becomes ``bytes`` (or, with options the node does not set, a ``0x`` string or a decimal
string). A message in which ``\\u0000`` does not occur holds no such string: the patch parses it
with the C scanner (``json.loads``: the same values, the same errors for malformed JSON), after
the same depth bound as above (the C scanner recurses on the C stack); any other message, or
another option, is parsed by Autobahn's decoder as before. The JSON of the messages a
connecting client sends (HELLO, AUTHENTICATE, SUBSCRIBE, CALL) was about 6% of the router
worker's CPU in a storm of 2,000 connections, most of it in the pure-Python scanner.
"""

import json

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


def c_scanned(loads: Callable[..., Any], max_depth: int = WAMP_MAX_DEPTH) -> Callable[..., Any]:
    """``loads`` (Autobahn's ``_loads``) that parses with the C scanner a text holding no
    ``\\u0000`` when no option is set, after refusing a text nested deeper than ``max_depth``.

    :raises Refused: ``invalid_frame``, for a text nested too deep (on the C scanner's path)
    """
    def c_loads(s, use_binary_hex_encoding=False, use_decimal_from_str=False, use_decimal_from_float=False):
        if (use_binary_hex_encoding or use_decimal_from_str or use_decimal_from_float or not isinstance(s, str)
                or "\\u0000" in s):
            return loads(s, use_binary_hex_encoding=use_binary_hex_encoding,
                         use_decimal_from_str=use_decimal_from_str, use_decimal_from_float=use_decimal_from_float)
        if s.count("[") + s.count("{") > max_depth:
            check_depth(s, max_depth)
        return json.loads(s)
    return c_loads


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

def _c_scanner(wiring: Wiring) -> None:
    # (a key of its own: undone before wampjson.depth, it puts back what that patch put in place)
    replace("autobahn.wamp.serializer._loads (C scanner)", serializer, "_loads", c_scanned(serializer._loads))


C_SCANNER = register(Patch(
    name="wampjson.c_scanner",
    replaces=("autobahn.wamp.serializer._loads",),
    checked={
        "autobahn.wamp.serializer._loads":
            "6c8bc5154789fcbf6375aa5b04be497e947d9a3a2eb6e8358587f19c89fb0889",
        # the decoder it builds per message: the pure-Python scanner, and its string hook (binary
        # data as a string starting with NUL; the hex and decimal options)
        "autobahn.wamp.serializer._WAMPJsonDecoder.__init__":
            "5e5afccf7b77bb7085cef8384e61e5a9bdd16b35a64f599a13048850925969ac",
        # the one caller, per message of a JSON connection, and the options it passes
        "autobahn.wamp.serializer.JsonObjectSerializer.unserialize":
            "322882e6b62536b2c2c65d2b343c773d8765a0d90ac56668447a0635e700097a",
        "autobahn.wamp.serializer.JsonObjectSerializer.__init__":
            "a781fb967131e3828b8ab321837454c319a9955d1c50e6deb8de7dec95f63cab",
    },
    why="Autobahn parses every WAMP JSON message with a decoder built for it and the pure-Python scanner, for "
        "the sake of binary strings that nearly no message holds: the messages of connecting clients were about "
        "6% of the router worker's CPU in a storm of 2,000 connections",
    remove_when="Autobahn parses WAMP JSON with the C scanner (decoding binary strings after the parse, or only "
                "when a message holds one)",
    apply=_c_scanner,
    shape=_shape,
))

#: the patches of this area
PATCHES = (DEPTH, C_SCANNER)

__all__ = ["C_SCANNER", "DEPTH", "PATCHES", "bounded", "c_scanned"]
