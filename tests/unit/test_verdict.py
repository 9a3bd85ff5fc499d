"""Unit tests of components.core.verdict: the rules behind /health and /health/serving."""

from components.core.verdict import DEGRADED, DOWN, DRAINING, OK, Facts, judge

ALL = ("root", "auth", "api", "presence", "bridge", "ops")
PATCHES = ({"name": "wampjson.depth", "state": "applied"},
           {"name": "hotpath.tcp_write", "state": "skipped", "reason": "upstream changed: x.y"})


def facts(**kw):
    base = dict(node="n1", expected=ALL, joined=set(ALL), store_kind="postgresql", store_ready=True,
                store_writes=True, store_reads=True, accepting_sends=True, peers=("n2", "n3"),
                links_in={"n2", "n3"}, links_out={"n2", "n3"}, sessions={"wamp": 3, "legacy": 1},
                uptime=12.34, instance="abc", patches=PATCHES)
    base.update(kw)
    return Facts(**base)


def test_a_node_with_everything_up_is_healthy():
    v = judge(facts())
    assert (v.serving, v.healthy, v.status, v.problems) == (True, True, OK, [])
    assert v.body == {
        "node": "n1", "status": "ok", "serving": True, "problems": [],
        "components": {w: True for w in ALL},
        "store": {"kind": "postgresql", "ready": True, "writes": "up", "reads": "up"},
        "accepting_sends": True,
        "links": {"n2": {"in": "up", "out": "up"}, "n3": {"in": "up", "out": "up"}},
        "sessions": {"wamp": 3, "legacy": 1}, "uptime_s": 12.3, "instance": "abc", "patches": list(PATCHES)}


def test_a_peer_link_down_degrades_but_the_node_still_serves():
    v = judge(facts(links_in={"n2"}, links_out={"n2"}))
    assert (v.serving, v.healthy, v.status) == (True, False, DEGRADED)
    assert v.problems == ["link from n3 down: n3's subscribers miss messages sent via this node",
                          "link to n3 down: this node's subscribers miss messages sent via n3"]
    assert v.body["links"]["n3"] == {"in": "down", "out": "down"}


def test_one_direction_down_is_named():
    v = judge(facts(links_out={"n3"}))
    assert v.problems == ["link to n2 down: this node's subscribers miss messages sent via n2"]


def test_store_failures_stop_serving():
    v = judge(facts(store_writes=False))
    assert (v.serving, v.healthy, v.status) == (False, False, DOWN)
    assert v.problems == ["store writes are failing"]
    assert judge(facts(store_reads=False)).problems == ["store reads are failing"]
    v = judge(facts(store_ready=False, store_writes=None, store_reads=None))
    assert not v.serving and v.body["store"] == {"kind": "postgresql", "ready": False, "writes": "unknown",
                                                  "reads": "unknown"}


def test_a_missing_component_or_a_held_gate_stops_serving():
    assert judge(facts(joined={"root", "auth", "api"})).problems == ["components not joined: presence, bridge, ops"]
    v = judge(facts(accepting_sends=False))
    assert not v.serving and v.problems == ["holding sends until the peers' links are up (the node is starting)"]


def test_draining_says_so_first():
    v = judge(facts(draining=True))
    assert (v.serving, v.status) == (False, DRAINING)
    assert v.problems[0].startswith("the node is stopping")


def test_a_single_node_needs_no_links():
    v = judge(facts(peers=(), links_in=set(), links_out=set()))
    assert v.healthy and v.body["links"] == {}


def test_a_patch_not_applied_is_listed_but_is_no_problem():
    """Upstream's own behaviour is in place instead: slower, or unguarded, never broken; the node
    logged why when it started."""
    v = judge(facts())
    assert (v.serving, v.healthy, v.problems) == (True, True, [])
    assert v.body["patches"][1] == {"name": "hotpath.tcp_write", "state": "skipped", "reason": "upstream changed: x.y"}


def test_a_held_gate_is_a_problem_only_once_the_root_that_holds_it_has_joined():
    assert judge(facts(accepting_sends=False, joined=set(ALL) - {"root"})).problems == ["components not joined: root"]
