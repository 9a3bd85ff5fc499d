"""Unit tests of :mod:`components.edge.health`, the ``/health`` resource: 200 or 503 with the
verdict's body (the patches listed), ``/health/serving`` for balancers, 404 below."""

import json
from types import SimpleNamespace

from twisted.internet import task
from twisted.web.test.requesthelper import DummyRequest

from components.core.settings import ConfigError
from components.edge.health import HealthResource
from components.service.nodehealth import EXPECTED_COMPONENTS
from components.service.runtime import Runtime
from tests.support.fakes import FakeGate, make_settings


def runtime(settings=None, joined=EXPECTED_COMPONENTS, gate_open=True):
    rt = Runtime(clock=task.Clock())
    rt._settings = settings or make_settings()
    for who in joined:
        rt.health.joined(who)
    rt.health.patches = [{"name": "wampjson.depth", "state": "applied"}]
    rt.messages.set(SimpleNamespace(store_ready=True, store=SimpleNamespace(states={"writes": True, "reads": True}),
                                    gate=FakeGate(gate_open)))
    return rt


def get(rt, *postpath: bytes):
    request = DummyRequest(list(postpath))
    body = HealthResource(rt=rt).render_GET(request)
    return request.responseCode, json.loads(body), request.responseHeaders.getRawHeaders(b"cache-control")


def test_a_healthy_node_answers_200_with_its_patches():
    status, body, cache = get(runtime())
    assert status == 200 and cache == [b"no-store"]
    assert body["status"] == "ok" and body["patches"] == [{"name": "wampjson.depth", "state": "applied"}]
    assert body["components"] == {who: True for who in EXPECTED_COMPONENTS}


def test_a_node_with_a_link_down_is_503_but_serving():
    rt = runtime(make_settings(peers=["n2"]))
    status, body, _ = get(rt)
    assert status == 503 and body["status"] == "degraded"
    status, body, _ = get(rt, b"serving")
    assert status == 200 and body["serving"] is True


def test_a_node_that_does_not_serve_is_503_on_both():
    rt = runtime(joined=("auth", "api"))
    assert get(rt)[0] == 503 and get(rt, b"serving")[0] == 503


def test_anything_below_is_404():
    status, body, _ = get(runtime(), b"nothing")
    assert status == 404 and "no such path" in body["error"]


def test_bad_settings_are_503_without_details():
    rt = Runtime(clock=task.Clock())
    rt._error = ConfigError("DEPTCAST_JWT_SECRET is missing")
    status, body, _ = get(rt)
    assert status == 503 and body == {"status": "down", "serving": False,
                                      "problems": ["a setting is missing or malformed; see the node's log"]}
