"""Integration tests of one real node: real ``crossbar start``, real Autobahn clients.

The node runs for the whole module with a small message limit and a rate limit whose
refill is so slow that a burst is exact: every test uses its own users and departments.
"""

import itertools
import socket
import time

import jwt
import pytest
import pytest_twisted
from autobahn.wamp.types import PublishOptions
from twisted.internet import defer, threads

from components import upstream
from components.core import names
from components.ops.nodeconfig import node_config
from tests.support.nodes import token
from tests.support.nodes import PORT_TAKEN, REPO, TEST_SECRET, Node
from tests.support.wamp import JoinRefused, call_error, connect, wait_for

MAX_BYTES = 1000
BURST = 30
_unique = itertools.count()


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    n = Node(tmp_path_factory.mktemp("node"), name="single",
             env={"DEPTCAST_MAX_MESSAGE_BYTES": str(MAX_BYTES), "DEPTCAST_BURST": str(BURST),
                  "DEPTCAST_RATE": "0.0001"})
    n.start()
    yield n
    n.stop()


def fresh(prefix: str) -> str:
    """A department or user name no other test uses."""
    return f"{prefix}{next(_unique)}"


@defer.inlineCallbacks
def member(node, user, dept, role="member", topics=None, serializers=None):
    """A connected client subscribed to its department, All and its own user topic."""
    client = yield connect(node.url, token(user, dept, role), serializers=serializers)
    if topics is None:
        topics = (f"deptcast.dept.{dept}", "deptcast.all", f"deptcast.user.{dept}_{user}")
    for topic in topics:
        yield client.listen(topic)
    return client


@defer.inlineCallbacks
def barrier(sender, clients, what="the marker"):
    """Send a final ``All`` marker and wait until every client has it: whatever the node was going
    to deliver before it has been delivered (one router delivers in publish order)."""
    marker = f"marker-{next(_unique)}"
    yield sender.call("deptcast.send", "All", marker)
    yield wait_for(lambda: all(marker in c.messages("deptcast.all") for c in clients), what=what)
    return marker


def test_start_log_is_clean(node):
    log = node.log_text()
    assert "Traceback" not in log
    assert "NumPy" not in log and "numpy" not in log
    assert "deptcast api: store ready (sqlite" in log
    assert f"deptcast node: {len(upstream.PATCHES)} of {len(upstream.PATCHES)} upstream patches applied" in log
    assert "is not applied" not in log and "deptcast upstream" not in log


@pytest_twisted.inlineCallbacks
def test_department_message_reaches_members_once_and_no_one_else(node):
    dept, other = fresh("cardio"), fresh("ortho")
    alice = yield member(node, fresh("alice"), dept)
    ann = yield member(node, fresh("ann"), dept)
    bob = yield member(node, fresh("bob"), other)
    pat = yield member(node, fresh("pat"), fresh("admin"), role="publisher", topics=())

    sent = []
    for i in range(5):
        env = yield alice.call("deptcast.send", dept, f"note {i}")
        sent.append(env)
    env = yield pat.call("deptcast.send", dept, "from the publisher")
    sent.append(env)
    yield barrier(pat, [alice, ann, bob])

    expected = [f"note {i}" for i in range(5)] + ["from the publisher"]
    for client in (alice, ann):
        assert client.messages(f"deptcast.dept.{dept}") == expected
        assert [e["id"] for e in client.events[f"deptcast.dept.{dept}"]] == [e["id"] for e in sent]
    assert bob.events[f"deptcast.dept.{dept}"] == []
    assert bob.messages(f"deptcast.dept.{other}") == []
    ids = [e["id"] for e in sent]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    first = sent[0]
    assert first["scope"] == "dept" and first["target"] == dept and first["sender_dept"] == dept
    assert first["sender"] == alice.details.authid and abs(first["ts"] - time.time() * 1000) < 60_000
    for c in (alice, ann, bob, pat):
        yield c.close()


@pytest_twisted.inlineCallbacks
def test_all_reaches_every_department_and_direct_message_only_its_user(node):
    depts = [fresh("d"), fresh("d"), fresh("d")]
    users = []
    for dept in depts:
        for _ in range(2):
            c = yield member(node, fresh("u"), dept)
            users.append(c)
    pat = yield member(node, fresh("pat"), fresh("admin"), role="publisher", topics=())
    yield pat.call("deptcast.send", "All", "to everyone")
    target = users[2]
    target_dept = target.details.authextra["dept"]
    yield pat.call("deptcast.send", f"{target_dept}_{target.details.authid}", "just for you")
    # a member may write to a user of its own department
    peer = users[3]
    yield peer.call("deptcast.send", f"{target_dept}_{target.details.authid}", "from a colleague")
    yield barrier(pat, users)

    for c in users:
        assert c.messages("deptcast.all")[0] == "to everyone"
        assert len(c.messages("deptcast.all")) == 2                       # the message and the marker
        user_topic = f"deptcast.user.{c.details.authextra['dept']}_{c.details.authid}"
        assert c.messages(user_topic) == (["just for you", "from a colleague"] if c is target else [])
    dm = target.events[f"deptcast.user.{target_dept}_{target.details.authid}"][0]
    assert dm["scope"] == "user" and dm["target"] == f"{target_dept}_{target.details.authid}"
    for c in users + [pat]:
        yield c.close()


@pytest_twisted.inlineCallbacks
def test_every_serializer_joins_and_receives(node):
    dept = fresh("ser")
    clients = []
    for serializer in ("json", "msgpack", "cbor"):
        c = yield member(node, fresh(serializer), dept, serializers=[_serializer(serializer)])
        clients.append(c)
    yield clients[0].call("deptcast.send", dept, "héllo ✓")
    yield wait_for(lambda: all(c.messages(f"deptcast.dept.{dept}") for c in clients))
    assert [c.messages(f"deptcast.dept.{dept}") for c in clients] == [["héllo ✓"]] * 3
    for c in clients:
        yield c.close()


def _serializer(name):
    from autobahn.wamp import serializer
    return {"json": serializer.JsonSerializer, "msgpack": serializer.MsgPackSerializer,
            "cbor": serializer.CBORSerializer}[name]()


@pytest_twisted.inlineCallbacks
def test_router_refuses_what_clients_may_not_do(node):
    dept = fresh("sec")
    alice = yield member(node, fresh("alice"), dept, topics=())
    pat = yield member(node, fresh("pat"), fresh("admin"), role="publisher", topics=())
    not_authorized = "wamp.error.not_authorized"

    for topic in (f"deptcast.dept.{fresh('other')}", f"deptcast.presence.{fresh('other')}",
                  "deptcast.user.someone-else"):
        e = yield call_error(alice.subscribe(lambda *a: None, topic))
        assert e.error == not_authorized, topic
    e = yield call_error(alice.subscribe(lambda *a: None, "deptcast.dept", options=_prefix()))
    assert e.error == not_authorized
    # the department check is per session, never cached per role: alice's allowed subscription
    # does not open the same topic to a member of another department
    yield alice.subscribe(lambda *a: None, f"deptcast.dept.{dept}")
    intruder = yield member(node, fresh("eve"), fresh("elsewhere"), topics=())
    e = yield call_error(intruder.subscribe(lambda *a: None, f"deptcast.dept.{dept}"))
    assert e.error == not_authorized
    # deptcast.all is the same for every member (its answer is cached per role); alice's user
    # topic is hers alone, before and after she subscribed to it
    alice_topic = f"deptcast.user.{dept}_{alice.details.authid}"
    e = yield call_error(intruder.subscribe(lambda *a: None, alice_topic))
    assert e.error == not_authorized
    for c in (alice, intruder):
        yield c.subscribe(lambda *a: None, "deptcast.all")
    yield alice.subscribe(lambda *a: None, alice_topic)
    e = yield call_error(intruder.subscribe(lambda *a: None, alice_topic))
    assert e.error == not_authorized
    # a publisher may subscribe to any department, but not to another user's topic
    yield pat.subscribe(lambda *a: None, f"deptcast.dept.{dept}")
    alice_topic = f"deptcast.user.{alice.details.authextra['dept']}_{alice.details.authid}"
    e = yield call_error(pat.subscribe(lambda *a: None, alice_topic))
    assert e.error == not_authorized

    for client in (alice, pat):
        for topic in (f"deptcast.dept.{dept}", "deptcast.all", "some.other.topic"):
            e = yield call_error(client.publish(topic, "x", options=PublishOptions(acknowledge=True)))
            assert e.error == not_authorized, (client, topic)
        e = yield call_error(client.register(lambda: None, "deptcast.send.fake"))
        assert e.error == not_authorized
        for proc in ("deptcast.internal.authorize", "wamp.session.list", "wamp.subscription.list"):
            e = yield call_error(client.call(proc, "x"))
            assert e.error == not_authorized, proc
    for c in (alice, pat, intruder):
        yield c.close()


def _prefix():
    from autobahn.wamp.types import SubscribeOptions
    return SubscribeOptions(match="prefix")


def _claims(**overrides):
    claims = {"sub": "tok", "dept": "tokdept", "exp": int(time.time()) + 600}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


@pytest.mark.parametrize("name, ticket, authid, uri", [
    ("expired", lambda: jwt.encode(_claims(exp=int(time.time()) - 10), TEST_SECRET, algorithm="HS256"), None,
     "deptcast.error.token_expired"),
    ("bad signature", lambda: jwt.encode(_claims(), "w" * 48, algorithm="HS256"), None,
     "deptcast.error.invalid_token"),
    ("alg none", lambda: jwt.encode(_claims(), None, algorithm="none"), None, "deptcast.error.invalid_token"),
    ("missing sub", lambda: jwt.encode(_claims(sub=None), TEST_SECRET, algorithm="HS256"), None,
     "deptcast.error.invalid_token"),
    ("missing dept", lambda: jwt.encode(_claims(dept=None), TEST_SECRET, algorithm="HS256"), None,
     "deptcast.error.invalid_token"),
    ("missing exp", lambda: jwt.encode(_claims(exp=None), TEST_SECRET, algorithm="HS256"), None,
     "deptcast.error.invalid_token"),
    ("wrong authid", lambda: token("tok", "tokdept"), "mallory", "deptcast.error.invalid_token"),
    ("garbage", lambda: "garbage", None, "deptcast.error.invalid_token"),
])
@pytest_twisted.inlineCallbacks
def test_bad_tokens_are_refused_with_their_uri(node, name, ticket, authid, uri):
    with pytest.raises(JoinRefused) as info:
        yield connect(node.url, ticket(), authid=authid)
    assert info.value.reason == uri, (name, info.value.message)


@pytest_twisted.inlineCallbacks
def test_matching_authid_is_accepted_and_anonymous_is_not(node):
    user = fresh("named")
    c = yield connect(node.url, token(user, "tokdept"), authid=user)
    assert (c.details.authid, c.details.authrole, c.details.authextra["dept"]) == (user, "member", "tokdept")
    yield c.close()
    # the network transport offers no anonymous way in: the components' role is local-only
    with pytest.raises(JoinRefused) as info:
        yield connect(node.url, None, authmethods=("anonymous",))
    assert info.value.reason == "wamp.error.no_auth_method"


@pytest_twisted.inlineCallbacks
def test_malformed_sends_get_their_error_and_the_node_keeps_serving(node):
    dept = fresh("val")
    alice = yield member(node, fresh("alice"), dept)
    cases = [
        ((), {}, "deptcast.error.invalid_frame"),
        ((dept,), {}, "deptcast.error.invalid_frame"),
        (("", "x"), {}, "deptcast.error.invalid_frame"),
        ((dept, ""), {}, "deptcast.error.invalid_frame"),
        ((5, "x"), {}, "deptcast.error.invalid_frame"),
        ((dept, 5), {}, "deptcast.error.invalid_frame"),
        ((dept, ["x"]), {}, "deptcast.error.invalid_frame"),
        (("bad dept!", "x"), {}, "deptcast.error.invalid_frame"),
        (("a_b_c", "x"), {}, "deptcast.error.invalid_frame"),
        ((dept, "x" * (MAX_BYTES + 1)), {}, "deptcast.error.too_large"),
        ((fresh("other"), "x"), {}, "deptcast.error.not_authorized"),
        (("All", "x"), {}, "deptcast.error.not_authorized"),
        ((f"{fresh('other')}_bob", "x"), {}, "deptcast.error.not_authorized"),
        ((), {"to": dept}, "deptcast.error.invalid_frame"),
    ]
    for args, kwargs, uri in cases:
        e = yield call_error(alice.call("deptcast.send", *args, **kwargs))
        assert e.error == uri, (args, kwargs)
        assert e.args and isinstance(e.args[0], str) and e.args[0], "a readable reason"
    # the limit is exact, keyword arguments work, and nothing refused was delivered or stored
    yield alice.call("deptcast.send", to=dept, message="x" * MAX_BYTES)
    yield alice.call("deptcast.send", dept, "still serving")
    yield wait_for(lambda: len(alice.messages(f"deptcast.dept.{dept}")) == 2)
    assert alice.messages(f"deptcast.dept.{dept}") == ["x" * MAX_BYTES, "still serving"]
    history = yield alice.call("deptcast.history")
    assert [e["message"] for e in history if e["target"] == dept] == ["x" * MAX_BYTES, "still serving"]
    for args, uri in (((), None), (("nope",), "deptcast.error.invalid_frame"),
                      ((None, 0), "deptcast.error.invalid_frame"), ((None, "ten"), "deptcast.error.invalid_frame")):
        if uri:
            e = yield call_error(alice.call("deptcast.history", *args))
            assert e.error == uri
    yield alice.close()


@pytest_twisted.inlineCallbacks
def test_names_that_are_not_uri_safe_are_refused_before_anything_is_stored(node):
    """A publisher may send to any department, but only to names that make a valid topic:
    ``x..y`` used to be stored and then fail to publish with ``wamp.error.runtime_error``."""
    pat = yield member(node, fresh("pat"), fresh("admin"), role="publisher", topics=())
    for to in ("x..y", ".", "a.", ".a", "x..y_bob", "cardio_.bob", "a" * 65):
        e = yield call_error(pat.call("deptcast.send", to, "x"))
        assert e.error == "deptcast.error.invalid_frame", to
    # the node still serves, and a dotted name that is URI-safe works end to end
    dept = fresh("r.and-d")
    reader = yield member(node, fresh("ann"), dept)
    env = yield pat.call("deptcast.send", dept, "dotted is fine")
    yield wait_for(lambda: reader.messages(f"deptcast.dept.{dept}") == ["dotted is fine"])
    history = yield reader.call("deptcast.history")
    assert [e["id"] for e in history if e["target"] == dept] == [env["id"]]
    for c in (pat, reader):
        yield c.close()


@pytest_twisted.inlineCallbacks
def test_a_direct_message_reaches_the_user_of_that_department_only(node):
    """cardio's bob and onco's bob are two people: two inboxes, two histories."""
    cardio, onco = fresh("cardio"), fresh("onco")
    bob_c = yield member(node, "bob", cardio)
    bob_o = yield member(node, "bob", onco)
    onco_member = yield member(node, fresh("olga"), onco, topics=())
    pat = yield member(node, fresh("pat"), fresh("admin"), role="publisher", topics=())
    yield pat.call("deptcast.send", f"{onco}_bob", "for onco's bob")
    # a member of onco may not write to cardio's bob
    e = yield call_error(onco_member.call("deptcast.send", f"{cardio}_bob", "hi"))
    assert e.error == "deptcast.error.not_authorized"
    yield pat.call("deptcast.send", f"{cardio}_bob", "for cardio's bob")
    yield barrier(pat, [bob_c, bob_o])
    assert bob_o.messages(f"deptcast.user.{onco}_bob") == ["for onco's bob"]
    assert bob_c.messages(f"deptcast.user.{cardio}_bob") == ["for cardio's bob"]
    for bob, text in ((bob_c, "for cardio's bob"), (bob_o, "for onco's bob")):
        history = yield bob.call("deptcast.history")
        assert [e["message"] for e in history if e["scope"] == "user"] == [text]
    # the other bob's inbox cannot be subscribed to, nor read by position
    e = yield call_error(bob_c.subscribe(lambda *a: None, f"deptcast.user.{onco}_bob"))
    assert e.error == "wamp.error.not_authorized"
    e = yield call_error(bob_c.call("deptcast.history", positions={f"deptcast.user.{onco}_bob": 0}))
    assert e.error == "deptcast.error.not_authorized"
    for c in (bob_c, bob_o, onco_member, pat):
        yield c.close()


@pytest_twisted.inlineCallbacks
def test_history_by_position_resumes_exactly(node):
    dept = fresh("pos")
    ann = yield member(node, fresh("ann"), dept)
    pat = yield member(node, fresh("pat"), fresh("admin"), role="publisher", topics=())
    sent = []
    for i in range(5):
        env = yield pat.call("deptcast.send", dept, f"m{i}")
        sent.append(env)
    topic = f"deptcast.dept.{dept}"
    yield wait_for(lambda: len(ann.messages(topic)) == 5)
    # a client that has seq 2 of its department gets exactly 3, 4, 5, in order, and pages on
    page = yield ann.call("deptcast.history", positions={topic: 2}, limit=2)
    assert [e["seq"] for e in page] == [3, 4] and page == sent[2:4]
    page = yield ann.call("deptcast.history", positions={topic: 4}, limit=2)
    assert page == sent[4:]
    page = yield ann.call("deptcast.history", positions={topic: 5})
    assert page == []
    for c in (ann, pat):
        yield c.close()


@pytest_twisted.inlineCallbacks
def test_rate_limit_refuses_past_the_burst_and_spares_others(node):
    dept = fresh("rate")
    spammer = yield member(node, fresh("spam"), dept, topics=())
    calm = yield member(node, fresh("calm"), dept, topics=())
    accepted = 0
    for i in range(BURST):
        yield spammer.call("deptcast.send", dept, f"m{i}")
        accepted += 1
    e = yield call_error(spammer.call("deptcast.send", dept, "one too many"))
    assert e.error == "deptcast.error.rate_limited"
    yield calm.call("deptcast.send", dept, "unaffected")
    history = yield calm.call("deptcast.history")
    assert [h["message"] for h in history if h["target"] == dept] == [f"m{i}" for i in range(BURST)] + ["unaffected"]
    yield spammer.close()
    yield calm.close()


@pytest_twisted.inlineCallbacks
def test_history_is_filtered_per_caller_ordered_and_paged(node):
    d1, d2 = fresh("h"), fresh("h")
    a = yield member(node, fresh("a"), d1, topics=())
    b = yield member(node, fresh("b"), d2, topics=())
    pat = yield member(node, fresh("pat"), fresh("admin"), role="publisher", topics=())
    start = yield pat.call("deptcast.history")
    after = start[-1]["id"] if start else None
    plan = [(a, d1, "a1"), (b, d2, "b1"), (pat, "All", "all1"), (pat, f"{d1}_{a.details.authid}", "dm-a"),
            (pat, f"{d2}_{b.details.authid}", "dm-b"), (a, d1, "a2"), (pat, d2, "b-from-pat")]
    for client, to, text in plan:
        yield client.call("deptcast.send", to, text)

    def texts(rows):
        return [r["message"] for r in rows if r["target"] in (d1, d2, "All") or r["scope"] == "user"]
    ha = yield a.call("deptcast.history", after)
    hb = yield b.call("deptcast.history", after=after)
    assert texts(ha) == ["a1", "all1", "dm-a", "a2"]
    assert texts(hb) == ["b1", "all1", "dm-b", "b-from-pat"]
    assert [r["id"] for r in ha] == sorted(r["id"] for r in ha)
    # paging: after and limit
    page1 = yield a.call("deptcast.history", after, 2)
    page2 = yield a.call("deptcast.history", page1[-1]["id"], 2)
    assert [r["message"] for r in page1 + page2] == ["a1", "all1", "dm-a", "a2"]
    # a client with nothing cached asks for the newest instead
    newest = yield a.call("deptcast.history", after, 2, latest=True)
    assert [r["message"] for r in newest] == ["dm-a", "a2"]
    e = yield call_error(a.call("deptcast.history", after, 2, latest="yes"))
    assert e.error == "deptcast.error.invalid_frame"
    for c in (a, b, pat):
        yield c.close()


@pytest_twisted.inlineCallbacks
def test_history_survives_a_restart(node):
    """Last in the module: restarts the node and compares history before and after."""
    c = yield connect(node.url, token("keeper", "persist"))
    for text in ("kept 1", "kept 2"):
        yield c.call("deptcast.send", "persist", text)
    before = yield c.call("deptcast.history")
    yield c.close()
    # node.stop/start block while they wait for the process: keep them off the reactor thread
    yield threads.deferToThread(node.stop)
    yield threads.deferToThread(node.start)
    c = yield connect(node.url, token("keeper", "persist"))
    after = yield c.call("deptcast.history")
    yield c.close()
    assert [r["message"] for r in before][-2:] == ["kept 1", "kept 2"]
    assert after == before


def test_dev_sign_in_is_off_outside_quick_start_mode(node):
    import urllib.error
    import urllib.request
    for method, data in (("GET", None), ("POST", b'{"user": "a", "dept": "b"}')):
        req = urllib.request.Request(f"http://127.0.0.1:{node.port}/dev/token", data=data, method=method)
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(req, timeout=10)
        assert info.value.code == 404


def test_static_files_are_cached_briefly(node):
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{node.port}/index.html", timeout=10) as r:
        assert r.headers["cache-control"] == "max-age=60, public"



@pytest_twisted.inlineCallbacks
def test_sessions_cost_no_info_lines_and_the_roles_are_asked_in_process(tmp_path):
    """At ``--loglevel info`` a client's connection, session, first history page and leave
    write no Crossbar line (they are at debug: components.upstream.logs), and the client
    roles' authorizer is asked in-process (components.upstream.roles: the ready line names the
    roles).
    A node of its own, stopped before its log is read (so every line is in it)."""
    n = Node(tmp_path / "quiet", name="quiet")
    n.start()
    try:
        dept = fresh("quiet")
        c = yield member(n, fresh("quinn"), dept)
        yield c.call("deptcast.history", limit=1)
        intruder = yield member(n, fresh("eve"), fresh("elsewhere"), topics=())
        e = yield call_error(intruder.subscribe(lambda *a: None, f"deptcast.dept.{dept}"))
        assert e.error == "wamp.error.not_authorized"
        for client in (c, intruder):
            yield client.close()
    finally:
        yield threads.deferToThread(n.stop)
    # from the moment the authorizer component is ready (the node's own sessions before it
    # are attached while Crossbar starts)
    text = n.log_text()
    assert f"authorizer ready on node quiet (asked in-process by the roles: {', '.join(names.CLIENT_ROLES)})" in text
    log = text.partition("deptcast auth: authorizer ready")[2]
    log = "\n".join(line for line in log.splitlines() if "[Router " in line)  # the controller's are its own
    for line in ("new session attached", "router session detached", "cookie tracking disabled",
                 "in active memory", "asked through WAMP calls"):
        assert line not in log, line


def test_a_node_whose_port_another_process_took_starts_on_another(tmp_path):
    """``free_port`` says a port is free now; another process may listen on it before the node
    does (the node then exits: address already in use). A node whose port may change takes
    another one on its first start; one whose port was given says what happened."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        node = Node(tmp_path / "moves", port=busy, config=lambda port: node_config(port=port, root=REPO,
                                                                                   interface="127.0.0.1"))
        try:
            node.start()
            assert node.port != busy and node.health(serving=True).ok
            # its log is the start that listened: the one that could not is beside it
            assert "Traceback" not in node.log_text()
            assert PORT_TAKEN in (tmp_path / "moves" / f"node-port-{busy}-taken.log").read_text()
        finally:
            node.stop()
        fixed = Node(tmp_path / "fixed", port=busy, name="fixed")
        with pytest.raises(RuntimeError, match=f"another process took its port {busy} before it listened"):
            fixed.start()
