"""Crossbar's per-connection info lines, logged at debug in the router worker.

At ``info``, Crossbar logs about three lines per WAMP connection: the WebSocket's cookie line
(``WampWebSocketServerProtocol.onConnect``), the session attach line (a multi-line dump of its
authextra) and its detach line (``Router.attach`` / ``detach``), and one per
``wamp.session.get`` (``RouterServiceAgent.session_get``, which deptcast's components call once
per client session). The worker formats each event as JSON and writes it to the controller,
which parses and prints it again: in a storm of 2,000 connections these lines were about a sixth
of the router worker's CPU (py-spy, ``bench/compare.py``'s storm). :func:`install` makes the
loggers of those three Crossbar classes log exactly those lines at ``debug`` (shown by
``--loglevel debug``); every other line, at every level, passes as it was.

Autobahn's WebSocket protocol also pretty-prints its configuration for a debug line on every
new connection, whether or not debug lines are logged (``pformat(configAttrLog)`` in
``WebSocketProtocol._connectionMade``, about 7% of the router worker's CPU in that storm):
:func:`install` gives that module a ``pformat`` that renders lists only when a log line is
formatted (:class:`LazyPformat`); everything else it pretty-prints as before.

Crossbar's router, session and role modules do the same for debug lines: ``Router.authorize``
pretty-prints every authorization it answers from its cache (and the session's welcome and
attach lines their authextra), about 6% of the router worker's CPU in a storm of 2,000
(py-spy, ``bench/compare.py --profile``). Every use of ``pformat`` in those modules is a log
line's argument, so :func:`install` gives them a ``pformat`` that always waits
(:func:`log_pformat`).

Written against Crossbar 26.10 and Autobahn 26.x (``constraints.txt``): the lines are recognised by their format
strings (:data:`PER_CONNECTION`); ``tests/unit/test_sessionlog.py`` fails if an upgrade changes
them, or Autobahn's and those Crossbar modules' uses of ``pformat``.
"""

import importlib
import pprint
from typing import Any, Dict, Iterable, Tuple

#: (module, class, a part of the format string of each per-connection info line)
PER_CONNECTION: Tuple[Tuple[str, str, Tuple[str, ...]], ...] = (
    ("crossbar.router.protocol", "WampWebSocketServerProtocol", ("cookie",)),
    ("crossbar.router.router", "Router", ("new session attached", "router session detached")),
    ("crossbar.router.service", "RouterServiceAgent", ("in active memory",)),
)


#: Crossbar modules whose every ``pformat`` call is an argument of a log call (checked by
#: ``tests/unit/test_sessionlog.py``)
LOG_ONLY_PFORMAT = ("crossbar.router.router", "crossbar.router.session", "crossbar.router.role")


class DemotedLogger:
    """A logger that logs the info lines whose format contains one of ``markers`` at debug,
    and everything else as ``log`` does (which keeps following the worker's log level).

    Set as a class's ``log`` attribute, like txaio's loggers (a non-data descriptor that is
    its own value for every instance).
    """

    def __init__(self, log: Any, markers: Iterable[str]) -> None:
        self.original = log
        self.markers = tuple(markers)

    def __get__(self, instance: Any, owner: Any = None) -> "DemotedLogger":
        return self

    def info(self, format: Any = None, *args: Any, **kwargs: Any) -> None:  # noqa: A002 (txaio's name)
        if isinstance(format, str) and any(m in format for m in self.markers):
            return self.original.debug(format, *args, **kwargs)
        return self.original.info(format, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.original, name)


class LazyPformat:
    """``pprint.pformat(obj)``, computed when it is formatted into a log line (or JSON-encoded
    by Crossbar's worker log observer, which uses ``repr``), never before."""

    __slots__ = ("obj", "args", "kwargs")

    def __init__(self, obj: Any, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> None:
        self.obj, self.args, self.kwargs = obj, args, kwargs

    def __str__(self) -> str:
        return pprint.pformat(self.obj, *self.args, **self.kwargs)

    __repr__ = __str__

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def lazy_pformat(obj: Any, *args: Any, **kwargs: Any) -> Any:
    """Autobahn's WebSocket module's ``pformat``: a list (only its per-connection debug line
    pretty-prints one) as a :class:`LazyPformat`; anything else (``Timings.__str__`` must
    return a ``str``) pretty-printed at once."""
    if isinstance(obj, list):
        return LazyPformat(obj, args, kwargs)
    return pprint.pformat(obj, *args, **kwargs)


def log_pformat(obj: Any, *args: Any, **kwargs: Any) -> "LazyPformat":
    """The ``pformat`` of the modules of :data:`LOG_ONLY_PFORMAT`: always a
    :class:`LazyPformat` (their every use is a log argument)."""
    return LazyPformat(obj, args, kwargs)


def _replace_pformat(module_name: str, replacement: Any) -> bool:
    """Give a module that pretty-prints with ``pprint.pformat`` the ``replacement`` instead;
    answer whether it has it (``False``: the module is missing or uses something else)."""
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return False
    if getattr(module, "pformat", None) is pprint.pformat:
        module.pformat = replacement
    return getattr(module, "pformat", None) is replacement


def _demote(owner: Any, markers: Tuple[str, ...]) -> Any:
    """Demote the ``log`` an object or class holds itself (``None`` if it holds none)."""
    log = vars(owner).get("log")
    if log is None or isinstance(log, DemotedLogger):
        return log
    demoted = DemotedLogger(log, markers)
    setattr(owner, "log", demoted)
    return demoted


def install(router: Any = None) -> Dict[str, DemotedLogger]:
    """Demote the per-connection lines of :data:`PER_CONNECTION` (once per process; a class
    that is missing or has no ``log`` is left alone), and those of ``router``'s service
    session (the realm's ``RouterServiceAgent``, which answers ``wamp.session.get``: an
    Autobahn session sets its own ``log`` when it is made, so the class's is not the one it
    uses).

    :param router: the :class:`crossbar.router.router.Router` of the realm (see
        :func:`components.wamp.worker.router_of`), or ``None``
    :returns: the demoted loggers by ``module.Class`` (and ``"service session"``),
        :func:`lazy_pformat` as ``autobahn.websocket.protocol.pformat`` and :func:`log_pformat`
        as the ``pformat`` of each module of :data:`LOG_ONLY_PFORMAT`
    :rtype: dict
    """
    done = {}
    classes = {}
    for module_name, class_name, markers in PER_CONNECTION:
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError):
            continue
        classes[class_name] = (cls, markers)
        log = _demote(cls, markers)
        if log is not None:
            done[f"{module_name}.{class_name}"] = log
    if _replace_pformat("autobahn.websocket.protocol", lazy_pformat):
        done["autobahn.websocket.protocol.pformat"] = lazy_pformat
    for module_name in LOG_ONLY_PFORMAT:
        if _replace_pformat(module_name, log_pformat):
            done[f"{module_name}.pformat"] = log_pformat
    agent = getattr(getattr(router, "_realm", None), "session", None)
    if "RouterServiceAgent" in classes:
        cls, markers = classes["RouterServiceAgent"]
        if isinstance(agent, cls):
            log = _demote(agent, markers)
            if log is not None:
                done["service session"] = log
    return done
