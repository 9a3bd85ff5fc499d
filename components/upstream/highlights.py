"""Highlighted log arguments made only when a line is written (one patch: ``highlights.lazy``).

Autobahn and Crossbar colour the arguments of their debug lines with ``hltype``, ``hlval``,
``hlid``, ``hlflag`` (``click.style`` escape codes) as the call's arguments, so the work is
done whatever the log level. Some of those lines are on paths every client takes, several
times: every WebSocket read (``WebSocketAdapterProtocol.dataReceived``: three), every CALL
(``Dealer.processCall``: seven), every PUBLISH and SUBSCRIBE (``Broker``: seven each), and
every authorization the router answers from its cache (``Router.authorize``: two). With 500
receivers acknowledging once a second they were about 8% of the router worker's samples
(``bench/receipts.py --profile``, of it 4% in ``dataReceived`` alone).

In the modules of :data:`MODULES`, whose every use of those functions is an argument of a log
call (read by hand, for the sources whose digests the patch records; a new reader after an
upgrade is refused by the shape check), the patch puts functions that answer a
:class:`LazyText`: the same text, made when the line is formatted (or JSON-encoded by
Crossbar's worker log observer, which uses ``repr``), never for a line nobody writes.
"""

import importlib
from typing import Any, Callable, Dict, Optional, Tuple

import autobahn.util
import crossbar._util

from components.upstream.registry import Patch, Wiring, register, replace, users_of

#: the modules whose highlight functions are only ever log arguments, as checked
MODULES = ("autobahn.twisted.websocket", "crossbar.router.router", "crossbar.router.dealer",
           "crossbar.router.broker")
#: where the highlight functions come from
SOURCES = (autobahn.util, crossbar._util)


class LazyText:
    """``fn(*args, **kwargs)``, computed when formatted, never before."""

    __slots__ = ("fn", "args", "kwargs")

    def __init__(self, fn: Callable[..., str], args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> None:
        self.fn, self.args, self.kwargs = fn, args, kwargs

    def __str__(self) -> str:
        return str(self.fn(*self.args, **self.kwargs))

    __repr__ = __str__

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def lazy(fn: Callable[..., str]) -> Callable[..., LazyText]:
    """A highlight function whose text is made when it is formatted."""
    def highlight(*args: Any, **kwargs: Any) -> LazyText:
        return LazyText(fn, args, kwargs)
    highlight.__name__ = getattr(fn, "__name__", "highlight")
    return highlight


def highlights(module: Any) -> Dict[str, Callable[..., str]]:
    """The highlight functions a module holds (its ``hl*`` names bound to Autobahn's or
    Crossbar's own).

    :rtype: dict
    """
    found = {}
    for name, value in vars(module).items():
        if name.startswith("hl") and any(getattr(src, name, None) is value for src in SOURCES):
            found[name] = value
    return found


#: the readers of those names in :data:`MODULES`, as checked: each use a log call's argument
USERS = (
    "autobahn.twisted.websocket.WebSocketAdapterProtocol.connectionLost",
    "autobahn.twisted.websocket.WebSocketAdapterProtocol.connectionMade",
    "autobahn.twisted.websocket.WebSocketAdapterProtocol.dataReceived",
    "autobahn.twisted.websocket.WebSocketClientProtocol._onConnect",
    "crossbar.router.router.Router.attach",
    "crossbar.router.router.Router.authorize",
    "crossbar.router.router.Router.detach",
    "crossbar.router.router.Router.has_role",
    "crossbar.router.router.Router.validate",
    "crossbar.router.router.RouterFactory.add_role",
    "crossbar.router.router.RouterFactory.drop_role",
    "crossbar.router.router.RouterFactory.start_realm",
    "crossbar.router.router.RouterFactory.stop_realm",
    "crossbar.router.dealer.Dealer.processCall",
    "crossbar.router.dealer.Dealer.processRegister",
    "crossbar.router.broker.Broker.processPublish",
    "crossbar.router.broker.Broker.processSubscribe",
)


def _shape(wiring: Wiring) -> Optional[str]:
    readers = set()
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        names = highlights(module)
        if not names:
            return f"{module_name} holds none of the highlight functions it was checked with"
        readers.update(users_of(module_name, names))
    new = sorted(readers - set(USERS))
    if new:
        return "the highlight functions have readers they were not checked for: " + ", ".join(new)
    return None


def _apply(wiring: Wiring) -> None:
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for name, fn in highlights(module).items():
            replace(f"{module_name}.{name}", module, name, lazy(fn))


LAZY = register(Patch(
    name="highlights.lazy",
    replaces=tuple(f"{m}.hl*" for m in MODULES),
    checked={
        "autobahn.twisted.websocket.WebSocketAdapterProtocol.connectionLost":
            "cf4d8aab057cd161dc6c415c3204dc0455d0444d7d1e19b2d28dbc5c88720c27",
        "autobahn.twisted.websocket.WebSocketAdapterProtocol.connectionMade":
            "63ceb64088e44552f7a6d6e97d2d7b5449cfb3dd86484c5e009356a316c6f7fe",
        "autobahn.twisted.websocket.WebSocketAdapterProtocol.dataReceived":
            "7997f762de21843361fe9d6bc8df40f6517cafe310d76eb61b292aa8cecf9661",
        "autobahn.twisted.websocket.WebSocketClientProtocol._onConnect":
            "f6dde986749b79ad3f254b8318c97a9409a5c268eaaf7a185e5c2ad15d7f0d22",
        "crossbar.router.router.Router.attach":
            "efbbab4706e175a81ba65bb0cdba9bb13a4a5905c6bd4a825915f3d7a9e5c158",
        "crossbar.router.router.Router.authorize":
            "ae01aca6104577857597c07c9b321246083762748ac10b012714e0839a7c6d7c",
        "crossbar.router.router.Router.detach":
            "5326cbfc6c52a2980c34195c80916e7b9ea6d2d5d116ea6d754473f309f45bf0",
        "crossbar.router.router.Router.has_role":
            "3efd15f4e67ceb88957bf087dab50aa305ab09966eea8775f92dd9714838680b",
        "crossbar.router.router.Router.validate":
            "d9a633c696891b6ce706afa3fd5a581b243b820c04d5cb5d6255f6570c887281",
        "crossbar.router.router.RouterFactory.add_role":
            "ec7c15974536f790a0d0d233f610bfb3b0e8940caf5041ab4cd93966298ca740",
        "crossbar.router.router.RouterFactory.drop_role":
            "bde1b2de1138206470c075bce0c941f591d1881e852afedec3f41e0ad2d57127",
        "crossbar.router.router.RouterFactory.start_realm":
            "049b8845beee7116dd0d54b002f0b714822a328e43b69340f87f540b3a970c98",
        "crossbar.router.router.RouterFactory.stop_realm":
            "4928f0f0c31bf4622e0f8d5244ce911ab64ef85c057c37bdc3eeb0463fa558ab",
        "crossbar.router.dealer.Dealer.processCall":
            "683304b2067781e0a80c90609f1074dc8b2cd8775f94933e2ecc48e3a78e2292",
        "crossbar.router.dealer.Dealer.processRegister":
            "7b006e32df7054076eaa9ee08b8a1ab22c5555e5db883c24ee210c22e004d0fe",
        "crossbar.router.broker.Broker.processPublish":
            "1dd9ade51c829929b1351654e681c8f45e89ed31deb642c9679e378ecdaa0b81",
        "crossbar.router.broker.Broker.processSubscribe":
            "9f5499a99f1210edee779f98de05ca41f196f3d0168b74600a087de85eb33f18",
    },
    why="Autobahn and Crossbar colour their debug lines' arguments (click.style) whatever the log level, on every "
        "WebSocket read, CALL, PUBLISH and SUBSCRIBE: about 8% of the router worker's samples with 500 receivers "
        "acknowledging once a second",
    remove_when="Autobahn and Crossbar highlight a debug line's arguments only when debug is on",
    apply=_apply,
    shape=_shape,
))

#: the one patch of this area
PATCHES = (LAZY,)

__all__ = ["LAZY", "MODULES", "PATCHES", "LazyText", "highlights", "lazy"]
