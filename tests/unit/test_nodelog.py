"""Unit tests of components.ops.nodelog: what a node prints."""

import io
import json

from twisted.logger import LogLevel

from components.ops import nodelog


def event(text, level=LogLevel.info, namespace="crossbar.router.router", system="Router      4242", **kw):
    return {"log_format": text, "log_level": level, "log_namespace": namespace, "log_system": system,
            "log_time": 1795700000.25, **kw}


def test_quiet_shows_deptcast_lines_and_every_warning_and_error():
    ours = event("deptcast api: store ready", namespace="autobahn.wamp.protocol")
    theirs = event("new session attached for realm")
    for e, quiet, everything in [(ours, True, True), (theirs, False, True),
                                 (event("Router link local session down!", LogLevel.warn), True, True),
                                 (event("INTERNAL ERROR", LogLevel.error), True, True),
                                 (event("deptcast api: debug detail", LogLevel.debug), False, True),
                                 (event("x", namespace="components.store.threaded.ThreadedStore"), True, True)]:
        text = nodelog.event_text(e)
        assert nodelog.shown(e, text, nodelog.QUIET) is quiet, text
        assert nodelog.shown(e, text, nodelog.ALL) is everything, text


def test_text_and_json_lines():
    e = event("deptcast node n1 is ready", cb_namespace="components.wamp.operations")
    text = nodelog.render(e, nodelog.event_text(e), nodelog.TEXT)
    assert text == "2026-11-26T13:33:20+0000 [Router 4242] deptcast node n1 is ready"
    line = json.loads(nodelog.render(e, nodelog.event_text(e), nodelog.JSON))
    assert line == {"time": "2026-11-26T13:33:20.250Z", "level": "info", "process": "Router 4242",
                    "namespace": "components.wamp.operations", "text": "deptcast node n1 is ready"}


def test_the_observer_splits_text_by_level_and_writes_json_to_one_stream():
    out, err = io.StringIO(), io.StringIO()
    observe = nodelog.make_observer(nodelog.QUIET, nodelog.TEXT, out, err)
    observe(event("deptcast api: ready"))
    observe(event("role config dump"))
    observe(event("deptcast legacy: OPEN MODE", LogLevel.warn))
    assert out.getvalue().count("\n") == 1 and "deptcast api: ready" in out.getvalue()
    assert "OPEN MODE" in err.getvalue() and "role config" not in out.getvalue() + err.getvalue()
    out = io.StringIO()
    observe = nodelog.make_observer(nodelog.ALL, nodelog.JSON, out, io.StringIO())
    observe(event("role config dump"))
    observe(event("a warning", LogLevel.warn))
    assert [json.loads(line)["level"] for line in out.getvalue().splitlines()] == ["info", "warn"]


def test_crossbar_gets_what_follows_the_double_dash_and_the_level():
    assert nodelog.crossbar_args(nodelog.parse(["--", "start", "--cbdir", "x"])) == \
        ["start", "--cbdir", "x", "--loglevel", "info"]
