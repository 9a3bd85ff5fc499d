"""Unit tests of :mod:`components.service.nodehealth`: the node's health state as its parts
report it (components, legacy sockets, the operations component's observations, the upstream
patches), turned into the facts ``/health`` judges."""

from types import SimpleNamespace

from twisted.internet import task

from components.service.nodehealth import EXPECTED_COMPONENTS, NodeHealth
from tests.support.fakes import FakeGate, FakeObserver, make_settings


def service(ready=True, gate_open=True):
    return SimpleNamespace(store_ready=ready, store=SimpleNamespace(states={"writes": True, "reads": None}),
                           gate=FakeGate(gate_open))


def test_a_starting_node_has_joined_nothing_and_has_no_service():
    clock = task.Clock()
    health = NodeHealth(clock)
    clock.advance(3)
    facts = health.facts(make_settings(), None)
    assert facts.joined == set() and facts.expected == EXPECTED_COMPONENTS and facts.uptime == 3
    assert (facts.store_ready, facts.store_writes, facts.accepting_sends, facts.patches) == (False, None, False, ())
    assert facts.sessions == {"wamp": 0, "legacy": 0}


def test_the_parts_reports_make_the_facts():
    health = NodeHealth(task.Clock())
    for who in EXPECTED_COMPONENTS:
        health.joined(who)
    health.left("ops")
    sock = object()
    health.legacy_opened(sock)
    health.observer = FakeObserver()
    health.patches = [{"name": "hotpath.tcp_write", "state": "applied"}]
    facts = health.facts(make_settings(peers=["n2", "n3"], db="postgresql://x/y"), service())
    assert facts.joined == set(EXPECTED_COMPONENTS) - {"ops"}
    assert (facts.store_kind, facts.store_ready, facts.store_writes, facts.store_reads) == (
        "postgresql", True, True, None)
    assert (facts.links_in, facts.links_out, facts.sessions) == ({"n2"}, {"n2", "n3"}, {"wamp": 4, "legacy": 1})
    assert facts.accepting_sends and facts.patches == ({"name": "hotpath.tcp_write", "state": "applied"},)
    health.legacy_closed(sock)
    assert health.sessions() == {"wamp": 4, "legacy": 0}


def test_the_root_is_expected_and_its_held_gate_keeps_the_node_from_serving():
    health = NodeHealth(task.Clock())
    assert EXPECTED_COMPONENTS[0] == "root"
    for who in EXPECTED_COMPONENTS:
        health.joined(who)
    verdict = health.verdict(make_settings(), service(gate_open=False))
    assert not verdict.serving
    assert verdict.problems == ["holding sends until the peers' links are up (the node is starting)"]
    assert health.verdict(make_settings(), service()).serving


def test_the_patches_are_listed_in_the_body():
    health = NodeHealth(task.Clock())
    health.patches = [{"name": "wampjson.depth", "state": "applied"},
                      {"name": "hotpath.tcp_write", "state": "skipped",
                       "reason": "upstream changed: twisted.internet.abstract.FileDescriptor.write"}]
    body = health.verdict(make_settings(), None).body
    assert body["patches"] == health.patches
