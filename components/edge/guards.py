"""Guards of the router worker process as a whole, which no single resource owns: request
bodies (see :class:`~components.edge.http.BoundedRequest`) and the nesting of WAMP messages
in JSON.

Autobahn decodes WAMP's JSON serialization with the pure-Python scanner of the standard
library. Under Crossbar's recursion limit of 100,000 a single unauthenticated ``/ws`` frame of
120,000 ``[`` is not refused by a ``RecursionError`` until the router has spent seconds of CPU
on it and logged a traceback of tens of megabytes (measured: 3 s of CPU, 43 MB of log, the
close after 30 s). MessagePack and CBOR bound their nesting themselves (both refuse a few
hundred levels at once). So the worker's JSON decoder checks the depth first
(:func:`components.core.jsonlimits.check_depth`); a deeper message is a protocol error and
closes that connection at once, as any malformed WAMP message does.

The resources of the node's web transport call :func:`guard_worker` when Crossbar makes them,
which is before the transport listens.
"""

from typing import Any, Callable

import txaio

from components.core.jsonlimits import WAMP_MAX_DEPTH, check_depth
from components.edge import hotpath
from components.edge.http import bound_request_bodies

txaio.use_twisted()  # a Twisted module: its txaio loggers are Twisted's

log = txaio.make_logger()


def bound_wamp_json(max_depth: int = WAMP_MAX_DEPTH) -> None:
    """Make autobahn's WAMP JSON decoder refuse messages nested deeper than ``max_depth``
    before it parses them (idempotent).

    Autobahn's ``JsonObjectSerializer.unserialize`` calls the module function ``_loads`` for
    every message and turns any exception it raises into a ``ProtocolError``; the wrapper
    raises :class:`~components.core.errors.Refused` (``invalid_frame``) for a message too deep.
    """
    from autobahn.wamp import serializer

    original: Callable[..., Any] = serializer._loads
    if getattr(original, "deptcast_max_depth", None) is not None:
        return

    def bounded_loads(s, *args, **kwargs):
        check_depth(s if isinstance(s, str) else bytes(s).decode("utf-8", "replace"), max_depth)
        return original(s, *args, **kwargs)

    bounded_loads.deptcast_max_depth = max_depth
    serializer._loads = bounded_loads


def guard_worker(max_body: int) -> None:
    """Install the worker-wide guards: request bodies of at most ``max_body`` bytes (413
    past it, see :func:`~components.edge.http.bound_request_bodies`) and WAMP JSON nested at
    most :data:`~components.core.jsonlimits.WAMP_MAX_DEPTH` levels; and, once, the worker's
    per-message paths without invisible log lines (:mod:`components.edge.hotpath`).
    """
    bound_request_bodies(max_body)
    bound_wamp_json()
    if not hotpath.installed():
        names = hotpath.install()
        log.info("deptcast: the worker's message paths skip invisible log lines and frame each event once "
                 "({n} of {total} upstream functions replaced)", n=len(names), total=len(hotpath.REPLACED))
