"""Unit tests of the metrics: label rules (components.core.metrics), the send and history
counters (components.service.metrics decorators) and the scrape-time collector."""

import json

from prometheus_client import generate_latest
from twisted.internet import defer, task

from components.core.errors import NOT_AUTHORIZED, RATE_LIMITED, Refused
from components.core.metrics import REGISTRY, http_path, reason_of
from components.core.settings import load_settings
from components.service.nodehealth import NodeHealth
from components.service.metrics import NodeCollector, counted_send, timed_history
from components.service.slot import Slot
from tests.support.fakes import FakeObserver


def sample(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_labels_stay_few():
    assert reason_of("deptcast.error.rate_limited") == "rate_limited"
    assert reason_of("wamp.error.runtime_error") == "other"
    assert http_path(b"/api/send") == "/api/send" and http_path(b"/health/serving/") == "/health/serving"
    assert http_path(b"/api/send/../../x") == "other" and http_path(None) == "other"


class Service:
    def __init__(self, outcome):
        self.outcome = outcome

    @counted_send
    def send(self, identity, to, message, key=None):
        return defer.succeed(self.outcome) if isinstance(self.outcome, dict) else defer.fail(self.outcome)

    @timed_history
    def history(self, identity, **kwargs):
        return defer.succeed([]) if self.outcome == "ok" else defer.fail(self.outcome)


def test_sends_are_counted_by_interface_outcome_and_topic_kind():
    before = (sample("deptcast_sends_accepted_total", interface="legacy"),
              sample("deptcast_events_published_total", kind="dept"),
              sample("deptcast_sends_refused_total", interface="wamp", reason="rate_limited"),
              sample("deptcast_sends_refused_total", interface="http", reason="not_authorized"))
    Service({"scope": "dept", "id": "1"}).send("id", "hr", "hi", interface="legacy")
    Service(Refused(RATE_LIMITED, "slow down")).send("id", "hr", "hi").addErrback(lambda f: None)
    Service(Refused(NOT_AUTHORIZED, "no")).send("id", "hr", "hi", interface="http").addErrback(lambda f: None)
    after = (sample("deptcast_sends_accepted_total", interface="legacy"),
             sample("deptcast_events_published_total", kind="dept"),
             sample("deptcast_sends_refused_total", interface="wamp", reason="rate_limited"),
             sample("deptcast_sends_refused_total", interface="http", reason="not_authorized"))
    assert [a - b for a, b in zip(after, before)] == [1, 1, 1, 1]


def test_history_is_timed_by_outcome():
    ok, refused = (sample("deptcast_history_seconds_count", outcome="ok"),
                   sample("deptcast_history_seconds_count", outcome="refused"))
    Service("ok").history("id", after=None)
    Service(Refused(NOT_AUTHORIZED, "no")).history("id").addErrback(lambda f: None)
    assert sample("deptcast_history_seconds_count", outcome="ok") == ok + 1
    assert sample("deptcast_history_seconds_count", outcome="refused") == refused + 1


class Runtime:
    def __init__(self, tmp_path):
        self.clock = task.Clock()
        self.health = NodeHealth(self.clock)
        self.messages = Slot(self.clock, "service")
        self._settings = load_settings(tmp_path, {"DEPTCAST_JWT_SECRET": "k" * 40, "DEPTCAST_PEERS": "n2,n3"})

    def settings(self):
        return self._settings


def test_the_collector_reads_the_node_at_scrape_time(tmp_path):
    from prometheus_client import CollectorRegistry
    rt = Runtime(tmp_path)
    registry = CollectorRegistry()
    registry.register(NodeCollector(rt, controller_pid=1))
    text = generate_latest(registry).decode()
    assert 'deptcast_sessions{kind="wamp"} 0.0' in text and "deptcast_up 0.0" in text
    rt.health.observer = FakeObserver()
    rt.health.legacy_opened(object())
    text = generate_latest(registry).decode()
    for line in ['deptcast_sessions{kind="wamp"} 4.0', 'deptcast_sessions{kind="legacy"} 1.0',
                 'deptcast_link_up{direction="in",peer="n2"} 1.0', 'deptcast_link_up{direction="in",peer="n3"} 0.0',
                 'deptcast_link_up{direction="out",peer="n3"} 1.0', "deptcast_users_online 3.0",
                 'deptcast_subscribers{kind="presence"} 1.0', "deptcast_router_events_sent_total 1234.0",
                 'deptcast_process_resident_memory_bytes{process="router"}']:
        assert line in text, line


def test_the_dashboard_asks_only_for_metrics_a_node_exposes(tmp_path):
    import re
    from prometheus_client import CollectorRegistry
    from tests.support.nodes import REPO
    rt = Runtime(tmp_path)
    rt.health.observer = FakeObserver()
    registry = CollectorRegistry()
    registry.register(NodeCollector(rt, controller_pid=1))
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
    exposed = {m.name + suffix for m in list(REGISTRY.collect()) + list(registry.collect())
               for suffix in suffixes.get(m.type, [""])}
    dashboard = json.loads((REPO / "docs" / "grafana-deptcast.json").read_text())
    asked = {name for panel in dashboard["panels"] for target in panel["targets"]
             for name in re.findall(r"deptcast_[a-z_]+", target["expr"])}
    assert len(dashboard["panels"]) == 6
    assert asked - exposed == set(), f"the dashboard asks for metrics no node has: {asked - exposed}"
