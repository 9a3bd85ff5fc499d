"""Crossbar's per-connection info lines are logged at debug in the router worker
(:mod:`components.upstream.logs`), and nothing else is; Autobahn's and Crossbar's debug lines
are pretty-printed only when written."""

import inspect
import importlib
from typing import Any, Dict, List

import pytest
import txaio
from twisted.logger import LogLevel, globalLogPublisher

from components import upstream
from components.upstream import logs

NAMES = [patch.name for patch in logs.PATCHES]


def install(router=None):
    return upstream.install(upstream.Wiring(router=router), only=NAMES)

txaio.use_twisted()


@pytest.mark.parametrize("module_name, class_name, markers", logs.PER_CONNECTION)
def test_the_installed_crossbar_still_logs_those_lines_at_info(module_name, class_name, markers):
    """An upgrade of Crossbar that renames these lines (or moves them to another class, or logs
    them another way) makes this fail: look at what the new version logs per connection."""
    cls = getattr(importlib.import_module(module_name), class_name)
    source = inspect.getsource(cls)
    for marker in markers:
        info_lines = [chunk for chunk in source.split("self.log.info(")[1:] if marker in chunk.split(")")[0]]
        assert info_lines, f"{class_name} no longer logs a line with {marker!r} at info"
    assert cls.__dict__.get("log") is not None


@pytest.fixture
def events():
    seen: List[Dict[str, Any]] = []
    globalLogPublisher.addObserver(seen.append)
    old = txaio.get_global_log_level()
    txaio.set_global_log_level("debug")
    yield seen
    txaio.set_global_log_level(old)
    globalLogPublisher.removeObserver(seen.append)


def test_the_per_connection_lines_are_logged_at_debug_and_the_rest_as_before(events):
    assert [s.name for s in install() if s.applied] == NAMES
    demoted = {f"{m}.{c}": getattr(importlib.import_module(m), c).log for m, c, _ in logs.PER_CONNECTION}
    assert all(isinstance(log, logs.DemotedLogger) for log in demoted.values())
    install()  # once per process: not demoted twice
    assert all(getattr(importlib.import_module(m), c).log is demoted[f"{m}.{c}"]
               for m, c, _ in logs.PER_CONNECTION)
    from crossbar.router.router import Router
    Router.log.info("{func} new session attached for realm={realm}", func="f", realm="deptcast")
    Router.log.info("{func} router session detached from realm {realm}", func="f", realm="deptcast")
    Router.log.info("{func}: realm started", func="f")
    Router.log.warn("{func} new session attached, but a warning", func="f")
    from crossbar.router.protocol import WampWebSocketServerProtocol
    WampWebSocketServerProtocol.log.info("{func} cookie tracking disabled on WebSocket connection", func="f")
    levels = [(e["log_format"].split(" ", 1)[1], e["log_level"]) for e in events if e.get("log_format")]
    assert levels == [("new session attached for realm={realm}", LogLevel.debug),
                      ("router session detached from realm {realm}", LogLevel.debug),
                      ("realm started", LogLevel.info),
                      ("new session attached, but a warning", LogLevel.warn),
                      ("cookie tracking disabled on WebSocket connection", LogLevel.debug)]


def test_at_info_the_per_connection_lines_are_not_logged(events):
    install()
    txaio.set_global_log_level("info")
    from crossbar.router.router import Router
    Router.log.info("{func} new session attached for realm={realm}", func="f", realm="deptcast")
    Router.log.info("{func}: realm started", func="f")
    assert [e["log_format"] for e in events if e.get("log_format")] == ["{func}: realm started"]


def test_the_realms_service_session_logs_wamp_session_get_at_debug(events):
    """The service session answers ``wamp.session.get`` (deptcast's components ask once per
    client session); an Autobahn session makes its own logger when it is made, so the one the
    realm's instance holds is demoted too."""
    from types import SimpleNamespace
    from autobahn.wamp.types import ComponentConfig
    from crossbar.router.service import RouterServiceAgent
    agent = RouterServiceAgent(ComponentConfig("deptcast"), None)
    assert "log" in vars(agent)  # its own, not the class's
    install(SimpleNamespace(_realm=SimpleNamespace(session=agent)))
    assert isinstance(agent.log, logs.DemotedLogger)
    agent.log.info("{func} session {session_id} in active memory", func="f", session_id=1)
    agent.log.info("{func} something else", func="f")
    levels = [(e["log_format"], e["log_level"]) for e in events if e.get("log_format")]
    assert levels == [("{func} session {session_id} in active memory", LogLevel.debug),
                      ("{func} something else", LogLevel.info)]
    upstream.uninstall(NAMES)
    assert not isinstance(agent.log, logs.DemotedLogger)


def test_without_a_router_only_the_classes_are_demoted():
    from autobahn.wamp.types import ComponentConfig
    from crossbar.router.service import RouterServiceAgent
    agent = RouterServiceAgent(ComponentConfig("deptcast"), None)
    assert all(s.applied for s in install(None))
    assert not isinstance(agent.log, logs.DemotedLogger)


def test_autobahns_websocket_module_pretty_prints_lists_only_for_log_lines():
    """Its uses of ``pformat``: the per-connection configuration dump (a list, for a debug
    line), ``Timings.__str__`` and the client's handshake line (dicts). An upgrade that
    pretty-prints anything else makes this fail: look whether a lazy value is still right."""
    from autobahn.websocket import protocol
    source = inspect.getsource(protocol)
    uses = [line.strip() for line in source.splitlines() if "pformat(" in line]
    assert uses == ["return pformat(self._timings)",
                    'self.log.debug("\\n{attrs}", attrs=pformat(configAttrLog))',
                    "transport_details=pformat(self._transport_details.marshal()),"]
    install()
    assert protocol.pformat is logs.lazy_pformat
    timings = protocol.Timings()
    timings.track("a")
    assert isinstance(str(timings), str) and "'a'" in str(timings)
    attrs = [("utf8validateIncoming", True, "WebSocketServerFactory")]
    lazy = protocol.pformat(attrs)
    assert isinstance(lazy, logs.LazyPformat)
    import pprint
    from twisted.logger import formatEvent
    assert formatEvent({"log_format": "\n{attrs}", "attrs": lazy}) == "\n" + pprint.pformat(attrs)
    import json
    assert json.dumps({"attrs": lazy}, default=repr) == json.dumps({"attrs": pprint.pformat(attrs)})


LOG_METHODS = {"trace", "debug", "info", "warn", "warning", "error", "critical", "failure"}


def pformat_calls_outside_log_calls(source: str) -> List[int]:
    """The lines of ``pformat(...)`` calls in ``source`` that are not inside the arguments of a
    ``<something>.log.<level>(...)`` call."""
    import ast

    outside = []

    def visit(node: ast.AST, in_log: bool) -> None:
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id == "pformat" and not in_log:
                outside.append(node.lineno)
            if (isinstance(func, ast.Attribute) and func.attr in LOG_METHODS
                    and isinstance(func.value, ast.Attribute) and func.value.attr == "log"):
                in_log = True
        for child in ast.iter_child_nodes(node):
            visit(child, in_log)

    visit(ast.parse(source), False)
    return outside


@pytest.mark.parametrize("module_name", logs.LOG_ONLY_PFORMAT)
def test_those_crossbar_modules_pretty_print_only_log_arguments(module_name):
    """An upgrade that uses ``pformat`` for anything but a log line in one of them makes this
    fail: a lazy value may not be right there."""
    module = importlib.import_module(module_name)
    source = inspect.getsource(module)
    assert "pformat(" in source
    assert pformat_calls_outside_log_calls(source) == []
    assert pformat_calls_outside_log_calls("x = pformat(y)\nself.log.debug('{a}', a=pformat(b))\n") == [1]


def test_a_cached_authorization_is_not_pretty_printed_unless_debug_is_logged(monkeypatch):
    """``Router.authorize`` answers from its cache with a debug line of the pretty-printed
    answer: built only when that line is written."""
    import pprint
    from types import SimpleNamespace
    from crossbar.router.router import RouterFactory
    from crossbar.worker.types import RouterRealm
    install()
    printed = []
    original = pprint.PrettyPrinter.pformat  # what pprint.pformat calls (the modules hold their own name)
    monkeypatch.setattr(pprint.PrettyPrinter, "pformat", lambda self, obj: printed.append(obj) or original(self, obj))
    factory = RouterFactory("node1", "worker1", None)
    factory.start_realm(RouterRealm(None, None, {"name": "deptcast"}))
    router = factory.get("deptcast")
    router._authorization_cache[("deptcast", "member", "deptcast.history", "call")] = {"allow": True, "cache": True}
    factory.add_role("deptcast", {"name": "member", "permissions": []})
    session = SimpleNamespace(_realm="deptcast", _authrole="member", _authid="alice", _session_id=1)
    answers = []
    router.authorize(session, "deptcast.history", "call", {}).addCallback(answers.append)
    assert answers[0]["allow"] is True
    assert printed == []
