"""Log lines nobody reads, not built per connection in the router worker (three patches).

``logs.per_connection_lines``: at ``info``, Crossbar logs about three lines per WAMP
connection: the WebSocket's cookie line (``WampWebSocketServerProtocol.onConnect``), the session
attach line (a multi-line dump of its authextra) and its detach line (``Router.attach`` /
``detach``), and one per ``wamp.session.get`` (``RouterServiceAgent.session_get``). The worker
formats each event as JSON and writes it to the controller, which parses and prints it again:
in a storm of 2,000 connections these lines were about a sixth of the router worker's CPU
(py-spy, ``bench/compare.py``'s storm). The patch makes the loggers of those three Crossbar
classes (and the realm's service session's own) log exactly those lines at ``debug`` (shown by
``--loglevel debug``); every other line, at every level, passes as it was.

``logs.autobahn_pformat``: Autobahn's WebSocket protocol pretty-prints its configuration for a
debug line on every new connection, whether or not debug lines are logged
(``pformat(configAttrLog)`` in ``WebSocketProtocol._connectionMade``, about 7% of the router
worker's CPU in that storm): the module gets a ``pformat`` that renders lists only when a log
line is formatted (:class:`LazyPformat`); everything else it pretty-prints as before.

``logs.crossbar_pformat``: Crossbar's router, session and role modules do the same for debug
lines: ``Router.authorize`` pretty-prints every authorization it answers from its cache (and
the session's welcome and attach lines their authextra), about 6% of the router worker's CPU
in a storm of 2,000. Every use of ``pformat`` in those modules is a log line's argument, so
they get a ``pformat`` that always waits (:func:`log_pformat`).

The lines are recognised by their format strings (:data:`PER_CONNECTION`); the ``pformat``
patches check at install that the modules' readers of ``pformat`` are the ones checked.
"""

import importlib
import pprint
from typing import Any, Callable, Dict, Iterable, Optional, Tuple

from components.upstream import bounds
from components.upstream.registry import Patch, Wiring, register, replace, users_of

#: (module, class, a part of the format string of each per-connection info line)
PER_CONNECTION: Tuple[Tuple[str, str, Tuple[str, ...]], ...] = (
    ("crossbar.router.protocol", "WampWebSocketServerProtocol", ("cookie",)),
    ("crossbar.router.router", "Router", ("new session attached", "router session detached")),
    ("crossbar.router.service", "RouterServiceAgent", ("in active memory",)),
)

#: parts of the warning lines Autobahn writes for each WAMP connection it fails or drops (a
#: client's protocol error, a message over the limit, a ping or close handshake timing out):
#: counted and summarised instead (:func:`components.upstream.bounds.connection_failed`)
SUMMARISED = ("failing WebSocket connection", "dropping connection to peer")


#: Crossbar modules whose every ``pformat`` call is an argument of a log call (checked by
#: ``tests/unit/upstream/test_logs.py``)
LOG_ONLY_PFORMAT = ("crossbar.router.router", "crossbar.router.session", "crossbar.router.role")


class DemotedLogger:
    """A logger that logs the info lines whose format contains one of ``markers`` at debug,
    and everything else as ``log`` does (which keeps following the worker's log level).

    Set as a class's ``log`` attribute, like txaio's loggers (a non-data descriptor that is
    its own value for every instance).
    """

    def __init__(self, log: Any, markers: Iterable[str],
                 summarise: Optional[Callable[[str, Dict[str, Any]], None]] = None) -> None:
        self.original = log
        self.markers = tuple(markers)
        self.summarise = summarise

    def __get__(self, instance: Any, owner: Any = None) -> "DemotedLogger":
        return self

    def info(self, format: Any = None, *args: Any, **kwargs: Any) -> None:
        if isinstance(format, str) and any(m in format for m in self.markers):
            return self.original.debug(format, *args, **kwargs)
        return self.original.info(format, *args, **kwargs)

    def warn(self, format: Any = None, *args: Any, **kwargs: Any) -> None:
        if self.summarise is not None and isinstance(format, str) and any(m in format for m in SUMMARISED):
            return self.summarise(format, kwargs)
        return self.original.warn(format, *args, **kwargs)

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


def _demote_per_connection(wiring: Wiring) -> None:
    bounds.wire(wiring)
    for module_name, class_name, markers in PER_CONNECTION:
        cls = getattr(importlib.import_module(module_name), class_name)
        # the WebSocket's failure lines: one summary per kind every 10 s
        summarise = bounds.connection_failed if class_name == "WampWebSocketServerProtocol" else None
        replace(f"{module_name}.{class_name}.log", cls, "log", DemotedLogger(cls.__dict__["log"], markers, summarise))
    # the realm's service session answers wamp.session.get: an Autobahn session makes its own
    # logger when it is made, so the class's is not the one it uses
    from crossbar.router.service import RouterServiceAgent
    agent = getattr(getattr(wiring.router, "_realm", None), "session", None)
    if isinstance(agent, RouterServiceAgent) and "log" in vars(agent) \
            and not isinstance(vars(agent)["log"], DemotedLogger):
        markers = dict((c, m) for _, c, m in PER_CONNECTION)["RouterServiceAgent"]
        replace("crossbar.router.service.RouterServiceAgent.log (the realm's service session)", agent, "log",
                DemotedLogger(vars(agent)["log"], markers))


def _loggers_shape(wiring: Wiring) -> Optional[str]:
    for module_name, class_name, _ in PER_CONNECTION:
        cls = getattr(importlib.import_module(module_name), class_name, None)
        if cls is None or cls.__dict__.get("log") is None:
            return f"{module_name}.{class_name} has no logger of its own"
    return None


PER_CONNECTION_LINES = register(Patch(
    name="logs.per_connection_lines",
    replaces=tuple(f"{m}.{c}.log" for m, c, _ in PER_CONNECTION),
    checked={
        "crossbar.router.protocol.WampWebSocketServerProtocol.onConnect":
            "31da73439ce9d1f8eaccb71f5ad338597ed7e155c436cc92fd84d1d5ecb1c342",
        "crossbar.router.router.Router.attach":
            "efbbab4706e175a81ba65bb0cdba9bb13a4a5905c6bd4a825915f3d7a9e5c158",
        "crossbar.router.router.Router.detach":
            "5326cbfc6c52a2980c34195c80916e7b9ea6d2d5d116ea6d754473f309f45bf0",
        "crossbar.router.service.RouterServiceAgent.session_get":
            "d96b71c2e1c611c8f8fe95eb07a6d091ace51eeab3a1db05392e8b4a2c71f22f",
        # the logger an Autobahn session makes for itself
        "autobahn.wamp.protocol.BaseSession.__init__":
            "68e799dcfb1aa543a30cc9807946197b8ef89def5e879a81458b267b35e91075",
    },
    why="Crossbar logs about three info lines per WAMP connection (cookie, session attached with its "
        "authextra, detached) and one per wamp.session.get, each encoded as JSON for the controller and printed "
        "again: about a sixth of the router worker's CPU in a storm of 2,000 connections",
    remove_when="Crossbar logs its per-connection lines at debug",
    apply=_demote_per_connection,
    shape=_loggers_shape,
))


#: the readers of ``pformat`` in Autobahn's WebSocket module, as checked: the configuration dump
#: (a list, for a debug line), ``Timings.__str__`` and the client's handshake line (dicts)
AUTOBAHN_PFORMAT_USERS = (
    "autobahn.websocket.protocol.Timings.__str__",
    "autobahn.websocket.protocol.WebSocketClientProtocol.startHandshake",
    "autobahn.websocket.protocol.WebSocketProtocol._connectionMade",
)
#: the readers of ``pformat`` in those Crossbar modules, as checked: every one a log argument
CROSSBAR_PFORMAT_USERS = (
    "crossbar.router.role.RouterRoleStaticAuth.authorize",
    "crossbar.router.router.Router.attach",
    "crossbar.router.router.Router.authorize",
    "crossbar.router.router.Router.validate",
    "crossbar.router.router.RouterFactory.add_role",
    "crossbar.router.router.RouterFactory.start_realm",
    "crossbar.router.session.RouterSession.onMessage",
)


def _pformat_shape(modules: Iterable[str], checked_users: Tuple[str, ...]) -> Any:
    def shape(wiring: Wiring) -> Optional[str]:
        for module_name in modules:
            module = importlib.import_module(module_name)
            if getattr(module, "pformat", None) is not pprint.pformat:
                return f"{module_name} does not pretty-print with pprint.pformat"
        users = sorted(u for m in modules for u in users_of(m, "pformat"))
        new = sorted(set(users) - set(checked_users))
        if new:
            return "pformat has readers it was not checked for: " + ", ".join(new)
        return None
    return shape


def _replacing_pformat(modules: Iterable[str], replacement: Any) -> Any:
    def apply(wiring: Wiring) -> None:
        for module_name in modules:
            replace(f"{module_name}.pformat", importlib.import_module(module_name), "pformat", replacement)
    return apply


AUTOBAHN_PFORMAT = register(Patch(
    name="logs.autobahn_pformat",
    replaces=("autobahn.websocket.protocol.pformat",),
    checked={
        "autobahn.websocket.protocol.Timings.__str__":
            "6a8cac1b554e3bd885cab4c4844c3ef925cce011d2157ac3fdb9568a2d8bf6dc",
        "autobahn.websocket.protocol.WebSocketClientProtocol.startHandshake":
            "6390bb357679f7812e583128adea2972449b606f2f510fb906318884fa88cf32",
        "autobahn.websocket.protocol.WebSocketProtocol._connectionMade":
            "7ac58d8bb6c3c752dc6753e09d2358573a2a47da90275e962830af0600fdf077",
    },
    why="Autobahn pretty-prints its protocol configuration for a debug line on every new WebSocket connection, "
        "whatever the log level: about 7% of the router worker's CPU in a storm of 2,000 connections",
    remove_when="Autobahn builds that debug line only when debug is on",
    apply=_replacing_pformat(("autobahn.websocket.protocol",), lazy_pformat),
    shape=_pformat_shape(("autobahn.websocket.protocol",), AUTOBAHN_PFORMAT_USERS),
))

CROSSBAR_PFORMAT = register(Patch(
    name="logs.crossbar_pformat",
    replaces=tuple(f"{m}.pformat" for m in LOG_ONLY_PFORMAT),
    checked={
        "crossbar.router.role.RouterRoleStaticAuth.authorize":
            "71894adaff32c25dba80cbf99c574b39ecab515900f2b1f1593910826ef6366b",
        "crossbar.router.router.Router.attach":
            "efbbab4706e175a81ba65bb0cdba9bb13a4a5905c6bd4a825915f3d7a9e5c158",
        "crossbar.router.router.Router.authorize":
            "ae01aca6104577857597c07c9b321246083762748ac10b012714e0839a7c6d7c",
        "crossbar.router.router.Router.validate":
            "d9a633c696891b6ce706afa3fd5a581b243b820c04d5cb5d6255f6570c887281",
        "crossbar.router.router.RouterFactory.add_role":
            "ec7c15974536f790a0d0d233f610bfb3b0e8940caf5041ab4cd93966298ca740",
        "crossbar.router.router.RouterFactory.start_realm":
            "049b8845beee7116dd0d54b002f0b714822a328e43b69340f87f540b3a970c98",
        "crossbar.router.session.RouterSession.onMessage":
            "d1d2ba97cc3676710c92d8a345cb5bb006c84e84040c5ef0596efa4c788e816a",
    },
    why="Crossbar's Router.authorize pretty-prints every answer it takes from its cache for a debug line (and "
        "the session its authextra), whatever the log level: about 6% of the router worker's CPU in a storm",
    remove_when="Crossbar builds those debug lines only when debug is on",
    apply=_replacing_pformat(LOG_ONLY_PFORMAT, log_pformat),
    shape=_pformat_shape(LOG_ONLY_PFORMAT, CROSSBAR_PFORMAT_USERS),
))

#: the three patches of this area
PATCHES = (PER_CONNECTION_LINES, AUTOBAHN_PFORMAT, CROSSBAR_PFORMAT)

__all__ = ["LOG_ONLY_PFORMAT", "PATCHES", "PER_CONNECTION", "DemotedLogger", "LazyPformat", "lazy_pformat",
           "log_pformat"]
