"""Debug lines' highlighted arguments made only when written (:mod:`components.upstream.highlights`):
the same text once formatted, nothing made for a line nobody writes, and upstream's functions
back when the patch is taken out."""

import json

import autobahn.util
import crossbar._util
import crossbar.router.broker
import crossbar.router.dealer
import crossbar.router.router
import pytest
from autobahn.twisted import websocket
from twisted.logger import formatEvent

from components import upstream
from components.upstream import highlights


@pytest.fixture
def patched():
    [state] = upstream.install(upstream.Wiring(), only=[highlights.LAZY.name])
    assert state.applied, state.reason
    yield
    upstream.uninstall([highlights.LAZY.name])


def test_the_modules_highlight_lazily_and_the_text_is_upstreams(patched):
    for module, name, source in ((crossbar.router.dealer, "hlflag", crossbar._util),
                                 (crossbar.router.broker, "hlid", crossbar._util),
                                 (crossbar.router.router, "hlval", autobahn.util),
                                 (websocket, "hltype", autobahn.util)):
        made = getattr(module, name)(True if name == "hlflag" else "x")
        assert isinstance(made, highlights.LazyText)
        assert str(made) == getattr(source, name)(True if name == "hlflag" else "x")
        assert f"{made}" == str(made) == repr(made)


def test_nothing_is_made_for_a_line_nobody_writes():
    made = []
    lazy = highlights.lazy(lambda v: made.append(v) or f"<{v}>")
    text = lazy("peer")
    assert made == []
    # a line that is written: as Twisted formats it, and as Crossbar's worker observer encodes it
    assert formatEvent({"log_format": "from {peer}", "peer": text}) == "from <peer>"
    assert json.dumps({"peer": repr(text)}) == '{"peer": "<peer>"}'
    assert made == ["peer", "peer"]


def test_upstreams_functions_come_back_when_taken_out():
    [state] = upstream.install(upstream.Wiring(), only=[highlights.LAZY.name])
    assert state.applied
    upstream.uninstall([highlights.LAZY.name])
    assert crossbar.router.dealer.hltype is crossbar._util.hltype
    assert websocket.hlval is autobahn.util.hlval
    assert isinstance(crossbar.router.dealer.hlid("x"), str)


def test_a_new_reader_after_an_upgrade_is_refused(monkeypatch):
    monkeypatch.setattr(highlights, "USERS", highlights.USERS[1:])
    [state] = upstream.install(upstream.Wiring(), only=[highlights.LAZY.name])
    try:
        assert not state.applied
        assert "readers they were not checked for" in state.reason
    finally:
        upstream.uninstall([highlights.LAZY.name])
