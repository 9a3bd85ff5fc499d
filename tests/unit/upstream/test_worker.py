"""Unit tests of :mod:`components.upstream.worker`: the reads of the router worker's internals
answer while their patch is applied, and as if the shape differed while it is not."""

import gc
from types import SimpleNamespace

from autobahn.wamp.types import SessionDetails
from twisted.internet import defer

from components import upstream
from components.upstream import worker


def apply(*patches):
    states = upstream.install(upstream.Wiring(), only=[p.name for p in patches])
    assert all(s.applied for s in states), states


def joined(session_id=11, authid="bob", dept="cardio"):
    return SimpleNamespace(_session_details=SessionDetails(
        realm="deptcast", session=session_id, authid=authid, authrole="member", authmethod="ticket",
        authprovider="function", authextra={"dept": dept}))


def router(**parts):
    return SimpleNamespace(**parts)


def test_session_info_reads_the_routers_session_map():
    r = router(_session_id_to_session={11: joined()})
    assert worker.session_info(r, 11) is None  # not applied: the caller asks the meta API
    apply(worker.SESSION_INFO)
    assert worker.session_info(r, 11) == {"authid": "bob", "authrole": "member", "authextra": {"dept": "cardio"}}
    assert worker.session_info(r, 12) is None and worker.session_info(object(), 11) is None


def test_events_sent_reads_the_routers_statistics():
    r = router(stats=lambda: {"messages": {"sent": {"event": 42, "result": 3}}})
    assert worker.events_sent(r) is None
    apply(worker.STATS)
    assert worker.events_sent(r) == 42 and worker.events_sent(object()) is None


def test_link_states_read_the_realms_link_manager():
    links = {"to-n2": SimpleNamespace(connected=True), "to-n3": SimpleNamespace(connected=False)}
    manager = type("Manager", (), {"keys": lambda self: links.keys(), "__getitem__": lambda self, k: links[k]})()
    r = router(_realm=SimpleNamespace(rlink_manager=manager))
    assert worker.link_states(r) == {}
    apply(worker.LINKS)
    assert worker.link_states(r) == {"to-n2": True, "to-n3": False} and worker.link_states(object()) == {}


class _Port:
    def __init__(self):
        self.stopped = False

    def getHost(self):
        return SimpleNamespace(host="127.0.0.1", port=8080)

    def stopListening(self):
        self.stopped = True
        return defer.succeed(None)


def test_the_web_transport_is_found_once_every_path_is_in_place_and_stops_listening():
    port = _Port()
    web = SimpleNamespace(_config={"type": "web", "paths": {"/": {}, "ws": {}, "health": {}}}, port=port,
                          root={"ws": 1})
    r = router(_realm=SimpleNamespace(controller=SimpleNamespace(transports={"t1": web})))
    assert worker.web_address(r) is None
    apply(worker.WEB_TRANSPORT)
    assert worker.web_address(r) is None  # /health is not in place yet
    web.root["health"] = 1
    assert worker.web_address(r) == ("127.0.0.1", 8080)
    worker.stop_listening(r)
    assert port.stopped


def test_without_the_patch_the_drain_touches_no_transport():
    port = _Port()
    web = SimpleNamespace(_config={"type": "web", "paths": {}}, port=port, root={})
    worker.stop_listening(router(_realm=SimpleNamespace(controller=SimpleNamespace(transports={"t1": web}))))
    assert not port.stopped


def test_session_details_are_what_crossbars_dynamic_authorizer_passes():
    """The dict Crossbar's ``RouterRoleDynamicAuth.authorize`` builds, without its transport."""
    from crossbar.router.role import RouterRoleDynamicAuth
    sent = []
    role = RouterRoleDynamicAuth.__new__(RouterRoleDynamicAuth)
    role._authorizer, role.log = "x", SimpleNamespace(debug=lambda *a, **kw: None)
    role._session = SimpleNamespace(call=lambda proc, details, *a: sent.append(details) or defer.succeed(True))
    session = joined()
    session._transport = SimpleNamespace(transport_details=None)
    role.authorize(session, "deptcast.all", "subscribe", {})
    [crossbars] = sent
    crossbars.pop("transport")
    assert worker.session_details(session) == crossbars


def test_the_collector_freezes_the_started_worker_and_goes_through_the_old_generation_less_often():
    before = gc.get_threshold()
    gc.unfreeze()
    try:
        apply(worker.GC)
        assert gc.get_threshold() == (before[0], before[1], worker.GC_FULL_AFTER)
        assert gc.get_freeze_count() > 0
        upstream.uninstall()
        assert gc.get_threshold() == before
        assert gc.get_freeze_count() == 0
    finally:
        gc.set_threshold(*before)
