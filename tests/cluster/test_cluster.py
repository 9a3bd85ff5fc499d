"""The cluster: the generator (``components.ops.cluster``, ``deptcast cluster init``) and a real
3-node cluster behind a real nginx on the machine's PostgreSQL.

The cluster starts once for the package (tests/cluster/conftest.py: the link and revoke modules
share it); each test uses departments of its own, so the tests do not see each other's
messages (except on ``All``, which they filter by id).
"""

import itertools
import json
import secrets
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from twisted.internet import defer, reactor, task, threads

from components.client.tx import Client as ShippedClient
from components.core import names
from components.core.names import RLINK_ROLE
from components.core.settings import PING_INTERVAL_MS, PING_TIMEOUT_MS
from components.ops.cli import main as cli_main
from components.ops.cluster import init_cluster
from components.ops.meshconfig import RLINK_PATH
from components.ops.nginx import PROXY_TIMEOUT_S, nginx_config
from components.ops.nodeconfig import COMPONENT_CLASSES
from components.ops.topology import NodeSpec, check_cluster, parse_node_spec
from tests.support.cluster import ListenProcess, NGINX, Sender, Subscriber, wait_links_carry
from tests.support.legacy import connect_legacy
from tests.support.nodes import REPO, Node, free_port, token
from tests.support.pg import pg_schema
from tests.support.rawwamp import EVENT, RESULT, RawWamp
from tests.support.wamp import connect, wait_for

DB = "postgresql://deptcast@db.example:5432/deptcast"
SPECS = [NodeSpec("n1", "10.0.0.1", 8080), NodeSpec("n2", "10.0.0.2", 8080), NodeSpec("n3", "10.0.0.3", 8080)]

# ----------------------------------------------------------------------------- generator


def _config(out: Path, name: str) -> dict:
    return json.loads((out / name / "config.json").read_text())


def _realm(config: dict) -> dict:
    return config["workers"][0]["realms"][0]


def test_parse_node_spec():
    assert parse_node_spec("n1=10.0.0.1:8080") == NodeSpec("n1", "10.0.0.1", 8080)
    assert parse_node_spec("web-2=host.example:9000") == NodeSpec("web-2", "host.example", 9000)
    assert parse_node_spec("n3=[::1]:8080").address == "[::1]:8080"
    for bad in ["n1", "n1=10.0.0.1", "N1=h:1", "n1=h:0", "n1=h:x", "n_1=h:1", "=h:1"]:
        with pytest.raises(ValueError):
            parse_node_spec(bad)


def test_check_cluster_refuses_what_cannot_work():
    check_cluster(SPECS, DB)
    with pytest.raises(ValueError, match="at least two"):
        check_cluster(SPECS[:1], DB)
    with pytest.raises(ValueError, match="names"):
        check_cluster([SPECS[0], NodeSpec("n1", "10.0.0.9", 1)], DB)
    with pytest.raises(ValueError, match="addresses"):
        check_cluster([SPECS[0], NodeSpec("n9", "10.0.0.1", 8080)], DB)
    with pytest.raises(ValueError, match="postgresql"):
        check_cluster(SPECS, "/var/lib/deptcast.sqlite3")


def test_init_writes_a_full_mesh_of_cryptosign_links(tmp_path):
    layout = init_cluster(SPECS, DB, tmp_path)
    pubkeys = {n.name: (tmp_path / n.name / "key.pub").read_text() for n in SPECS}
    for me in SPECS:
        config = _config(tmp_path, me.name)
        realm = _realm(config)
        peers = [p for p in SPECS if p.name != me.name]
        # one link to every peer, pulling only what this node's subscribers need
        links = {link["id"]: link for link in realm["rlinks"]}
        assert set(links) == {f"to-{p.name}" for p in peers}
        for p in peers:
            link = links[f"to-{p.name}"]
            assert link["authid"] == me.name
            assert link["transport"]["url"] == f"ws://{p.host}:{p.port}/{RLINK_PATH}"
            assert link["transport"]["endpoint"]["host"] == p.host
            assert (link["forward_local_events"], link["forward_remote_events"]) == (True, False)
            assert (link["forward_local_invocations"], link["forward_remote_invocations"]) == (False, False)
        # every peer's node key is a principal of the link role on this node
        web = config["workers"][0]["transports"][0]
        assert (web["endpoint"]["type"], web["endpoint"]["port"], web["endpoint"]["interface"]) == \
            ("tcp", me.port, me.host)
        principals = web["paths"][RLINK_PATH]["auth"]["cryptosign"]["principals"]
        assert set(principals) == {p.name for p in peers}
        for p in peers:
            assert principals[p.name]["role"] == RLINK_ROLE
            [key] = principals[p.name]["authorized_keys"]
            assert len(key) == 64 and key in pubkeys[p.name]
        # the link role has static permissions (never an authorizer as well): deptcast's topics only
        [role] = [r for r in realm["roles"] if r["name"] == RLINK_ROLE]
        assert "authorizer" not in role
        assert [(p["uri"], p["match"], p["allow"]) for p in role["permissions"]] == [
            ("deptcast.", "prefix", {"call": False, "register": False, "publish": True, "subscribe": True})]
        # the node's own components, in the router worker, on the shared database
        [router] = config["workers"]
        env = router["options"]["env"]["vars"]
        assert env == {"DEPTCAST_DB": DB, "DEPTCAST_NODE": me.name,
                       "DEPTCAST_PEERS": ",".join(p.name for p in peers)}
        assert [c["classname"] for c in router["components"]] == list(COMPONENT_CLASSES)
        assert (tmp_path / me.name / "jwt.secret").read_text() == layout.secret_file.read_text()
        assert (tmp_path / me.name / "key.priv").stat().st_mode & 0o777 == 0o600
        assert (tmp_path / me.name / "config.json").stat().st_mode & 0o777 == 0o600


def test_init_again_keeps_keys_and_secret(tmp_path):
    init_cluster(SPECS, DB, tmp_path)
    before = {n.name: (tmp_path / n.name / "key.priv").read_text() for n in SPECS}
    secret = (tmp_path / "jwt.secret").read_text()
    config_before = _config(tmp_path, "n1")
    more = SPECS + [NodeSpec("n4", "10.0.0.4", 8080)]
    init_cluster(more, DB, tmp_path)
    assert {n.name: (tmp_path / n.name / "key.priv").read_text() for n in SPECS} == before
    assert (tmp_path / "jwt.secret").read_text() == secret
    # adding a node: the old nodes now link to it and accept its key; their own links are kept
    config_after = _config(tmp_path, "n1")
    assert {link["id"] for link in _realm(config_after)["rlinks"]} == {"to-n2", "to-n3", "to-n4"}
    assert [lk for lk in _realm(config_after)["rlinks"] if lk["id"] != "to-n4"] == _realm(config_before)["rlinks"]
    principals = config_after["workers"][0]["transports"][0]["paths"][RLINK_PATH]["auth"]["cryptosign"]["principals"]
    assert set(principals) == {"n2", "n3", "n4"}


def test_nginx_config_balances_and_upgrades():
    text = nginx_config(SPECS, "8000")
    for n in SPECS:
        assert f"server {n.host}:{n.port} " in text
    assert "location /ws {" in text and "location /webSocket/ {" in text
    assert text.count("proxy_set_header Upgrade $http_upgrade;") == 2
    assert text.count("proxy_set_header Connection $connection_upgrade;") == 2
    assert f"proxy_read_timeout {PROXY_TIMEOUT_S}s;" in text
    assert PROXY_TIMEOUT_S * 1000 > PING_INTERVAL_MS + PING_TIMEOUT_MS
    assert "least_conn" not in text and "ip_hash" not in text  # round robin
    # links connect node to node, never through the balancer
    assert f"location /{RLINK_PATH} {{\n            return 404;" in text
    assert "gzip on;" in text and "application/javascript" in text
    assert "client_max_body_size 512k;" in text


@pytest.mark.skipif(not shutil.which("nginx") and not Path(NGINX).exists(), reason="nginx is not installed")
def test_nginx_accepts_the_generated_config(tmp_path):
    layout = init_cluster(SPECS, DB, tmp_path, lb_listen="127.0.0.1:18999")
    result = subprocess.run([NGINX, "-t", "-p", str(tmp_path / "nginx"), "-c", str(layout.nginx_conf),
                             "-e", "logs/error.log"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def test_cli_cluster_init(tmp_path, capsys):
    out = tmp_path / "cl"
    code = cli_main(["cluster", "init", "--node", "n1=127.0.0.1:9001", "--node", "n2=127.0.0.1:9002",
                     "--db", DB, "--out", str(out), "--lb-listen", "127.0.0.1:9000"])
    assert code == 0
    assert {p.name for p in out.iterdir()} >= {"n1", "n2", "nginx.conf", "jwt.secret"}
    assert "listen 127.0.0.1:9000 backlog=4096;" in (out / "nginx.conf").read_text()
    printed = capsys.readouterr()
    assert "crossbar start --cbdir" in printed.out
    assert DB not in printed.out + printed.err  # the URL may hold a password
    assert cli_main(["cluster", "init", "--node", "n1=127.0.0.1:9001", "--db", DB, "--out", str(out)]) == 2


def test_cli_cluster_demo_needs_a_database(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("DEPTCAST_DB", raising=False)
    assert cli_main(["cluster", "demo", "--out", str(tmp_path / "demo")]) == 2
    assert "--db" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()


# ----------------------------------------------------------------------------- real cluster


def _unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


@defer.inlineCallbacks
def _connect_all(url, users, timeout=30.0):
    clients = yield defer.gatherResults([connect(url, token(u, d, r), timeout=timeout) for u, d, r in users],
                                        consumeErrors=True)
    return clients


@defer.inlineCallbacks
def _publishers(cluster):
    """One publisher connected straight to each node: sends "via" a known node."""
    pubs = {}
    for name, node in cluster.nodes.items():
        pubs[name] = yield connect(node.url, token(f"pub-{name}", "ops", "publisher"))
    return pubs


@defer.inlineCallbacks
def _dept_history(client, dept: str):
    """The whole stored history of department ``dept``, page by page until an empty answer (the
    node caps a page's size: DEPTCAST_HISTORY_LIMIT, and about 1 MiB)."""
    out, after = [], None
    while True:
        page = yield client.call(names.PROC_HISTORY, after, 1000)
        if not page:
            return out
        out.extend(e for e in page if e["scope"] == "dept" and e["target"] == dept)
        after = page[-1]["id"]


@defer.inlineCallbacks
def _close(clients):
    yield defer.gatherResults([c.close() for c in clients], consumeErrors=True)


@pytest_twisted.inlineCallbacks
def test_clients_spread_over_all_nodes(cluster):
    users = [(f"u{i}", "spread", "member") for i in range(36)]
    clients = yield _connect_all(cluster.url, users)
    try:
        per_node = {name: 0 for name in cluster.nodes}
        for c in clients:
            per_node[cluster.node_of(c)] += 1
        print(f"\n36 clients through nginx: {per_node}")
        assert sum(per_node.values()) == 36
        assert all(count > 0 for count in per_node.values()), per_node
    finally:
        yield _close(clients)


@pytest_twisted.inlineCallbacks
def test_messages_reach_exactly_their_audience_on_every_node(cluster):
    depts = [_unique("sales"), _unique("it"), _unique("hr")]
    users = [(f"{d[:2]}{i}", d, "member") for d in depts for i in range(12)]
    clients = yield _connect_all(cluster.url, users)
    pubs = yield _publishers(cluster)
    try:
        by_node = {cluster.node_of(c) for c in clients}
        assert by_node == set(cluster.nodes)
        for c, (user, dept, _) in zip(clients, users):
            yield c.listen(names.dept_topic(dept))
            yield c.listen(names.TOPIC_ALL)
            yield c.listen(names.user_topic(dept, user))
        # a subscription reaches the other nodes over the links a moment after it is made
        yield wait_links_carry(cluster, sorted({names.dept_topic(d) for d in depts} | {names.TOPIC_ALL}
                                               | {names.user_topic(d, u) for u, d, _ in users}))

        sent = {"dept": {d: [] for d in depts}, "all": [], "user": {}}
        for via, pub in sorted(pubs.items()):
            for d in depts:
                env = yield pub.call(names.PROC_SEND, d, f"to {d} via {via}")
                sent["dept"][d].append(env["id"])
            env = yield pub.call(names.PROC_SEND, names.ALL, f"to all via {via}")
            sent["all"].append(env["id"])
        # a member sends to its own department, via whichever node nginx gave it
        for c, (user, dept, _) in zip(clients[::12], users[::12]):
            env = yield c.call(names.PROC_SEND, dept, f"from member {user}")
            sent["dept"][dept].append(env["id"])
        # direct messages: one per department, via each node in turn
        for (_via, pub), (user, dept, _) in zip(itertools.cycle(sorted(pubs.items())), users[5::12]):
            env = yield pub.call(names.PROC_SEND, names.user_key(dept, user), f"dm {user}")
            sent["user"][user] = env["id"]
        # the markers come last on every topic; once every client has them, nothing is in flight
        markers = {}
        for via, pub in sorted(pubs.items()):
            env = yield pub.call(names.PROC_SEND, names.ALL, f"marker via {via}")
            markers[via] = env["id"]
        for d in depts:
            env = yield pubs["n1"].call(names.PROC_SEND, d, "dept marker")
            sent["dept"][d].append(env["id"])

        def ids(c, topic):
            return [e["id"] for e in c.events[topic]]

        def done():
            return all(set(markers.values()) <= set(ids(c, names.TOPIC_ALL))
                       and sent["dept"][d][-1] in ids(c, names.dept_topic(d))
                       for c, (_, d, _) in zip(clients, users))
        yield wait_for(done, 30, "every client to receive the markers")
        yield task.deferLater(reactor, 0.5, lambda: None)  # room for a late duplicate to show

        all_ids = sent["all"] + list(markers.values())
        for c, (user, dept, _) in zip(clients, users):
            assert ids(c, names.dept_topic(dept)) == sorted(ids(c, names.dept_topic(dept)))
            assert sorted(ids(c, names.dept_topic(dept))) == sorted(sent["dept"][dept]), (user, cluster.node_of(c))
            assert sorted(ids(c, names.TOPIC_ALL)) == sorted(all_ids), (user, cluster.node_of(c))
            expected_dm = [sent["user"][user]] if user in sent["user"] else []
            assert ids(c, names.user_topic(dept, user)) == expected_dm, user
            # nothing of another department, on any topic
            everything = [e for topic in c.events for e in c.events[topic]]
            assert all(e["scope"] != "dept" or e["target"] == dept for e in everything)
    finally:
        yield _close(clients + list(pubs.values()))


@pytest_twisted.inlineCallbacks
def test_events_across_links_carry_no_internals(cluster):
    """A client on n2 receives a message sent via n1 through the link: its details name no
    session, authid, role or forward_for (the links themselves still need them disclosed)."""
    dept = _unique("internals")
    topic = names.dept_topic(dept)
    listener = RawWamp(cluster.nodes["n2"].port)
    sender = RawWamp(cluster.nodes["n1"].port)
    try:
        listener.join(token("l", dept))
        listener.subscribe(topic)
        yield wait_links_carry(cluster, [topic])
        sender.join(token("s", dept))
        assert sender.call("deptcast.send", dept, "across")[0] == RESULT
        event = listener.receive(timeout=20)
        assert event is not None and event[0] == EVENT, event
        assert event[4][0]["message"] == "across"
        assert not {"publisher", "publisher_authid", "publisher_authrole", "forward_for"} & set(event[3]), event[3]
    finally:
        listener.close()
        sender.close()


@pytest_twisted.inlineCallbacks
def test_group_commits_on_every_node_keep_order_gapless_seq_and_exactly_once(cluster):
    """Keyed batches and keyed single sends to one department go in at once through every
    node, each batch sent twice (through two nodes, concurrently, as a retry would): every
    subscriber, on every node, gets each notice once (events from different nodes may
    interleave on the way); the shipped client on every node gets them in seq order 1..N
    without a gap; every answer for a key is its first envelope."""
    dept = _unique("group")
    topic = names.dept_topic(dept)
    subs, shipped = [], []
    got = {name: [] for name in cluster.nodes}
    for name, node in cluster.nodes.items():
        for i in range(2):
            c = yield connect(node.url, token(f"s{name}{i}", dept))
            yield c.listen(topic)
            subs.append(c)
        client = ShippedClient(node.url, token(f"c{name}", dept), got[name].append)
        yield client.start()
        shipped.append(client)
    yield wait_links_carry(cluster, [topic])
    pubs = {}
    for name, node in cluster.nodes.items():  # one backend account, a session on each node
        pubs[name] = yield connect(node.url, token("backend", "ops", "publisher"))
    order = sorted(pubs)
    try:
        calls = []
        for b in range(6):
            items = [{"to": dept, "message": f"b{b}.{i}", "key": f"b{b}-{i}"} for i in range(50)]
            for via in (order[b % len(order)], order[(b + 1) % len(order)]):
                calls.append(pubs[via].call(names.PROC_SEND_BATCH, items))
        for i in range(60):
            via = order[i % len(order)]
            calls.append(pubs[via].call(names.PROC_SEND, dept, f"s{i}", key=f"s-{i}"))
            calls.append(pubs[order[(i + 1) % len(order)]].call(names.PROC_SEND, dept, f"s{i}", key=f"s-{i}"))
        answers = yield defer.gatherResults(calls)
        batches, singles = answers[:12], answers[12:]
        for first, again in zip(batches[::2], batches[1::2]):
            assert first == again and all("error" not in r for r in first)
        for first, again in zip(singles[::2], singles[1::2]):
            assert first == again
        stored = {e["id"]: e for batch in batches for e in batch} | {e["id"]: e for e in singles}
        assert len(stored) == 6 * 50 + 60
        expected = sorted(stored.values(), key=lambda e: e["seq"])
        assert [e["seq"] for e in expected] == list(range(1, len(expected) + 1))
        assert [e["id"] for e in expected] == sorted(e["id"] for e in expected)
        yield wait_for(lambda: all(len(c.events[topic]) >= len(expected) for c in subs)
                       and all(len(g) >= len(expected) for g in got.values()), 60, "every notice")
        yield task.deferLater(reactor, 0.5, lambda: None)  # room for a late duplicate to show
        for c in subs:
            assert sorted(c.events[topic], key=lambda e: e["seq"]) == expected, cluster.node_of(c)
        for name, envelopes in got.items():
            assert envelopes == expected, name
    finally:
        for client in shipped:
            yield client.stop()
        yield _close(subs + list(pubs.values()))


@pytest_twisted.inlineCallbacks
def test_history_is_the_same_on_every_node(cluster):
    dept = _unique("fin")
    pubs = yield _publishers(cluster)
    readers = {}
    try:
        sent = []
        for i, (via, pub) in enumerate(sorted(pubs.items()) * 3):
            env = yield pub.call(names.PROC_SEND, dept, f"h{i} via {via}")
            sent.append(env)
        for name, node in cluster.nodes.items():
            readers[name] = yield connect(node.url, token(f"reader-{name}", dept))
        answers = {}
        for name, reader in readers.items():
            page = yield reader.call(names.PROC_HISTORY, None, 1000)
            answers[name] = [e for e in page if e["scope"] == "dept"]
        assert answers["n1"] == sent
        assert answers["n2"] == answers["n1"] and answers["n3"] == answers["n1"]
        # `after` pages the same way everywhere
        middle = sent[3]["id"]
        pages = {}
        for name, reader in readers.items():
            pages[name] = yield reader.call(names.PROC_HISTORY, middle, 2)
        assert pages["n1"] == pages["n2"] == pages["n3"] == sent[4:6]
    finally:
        yield _close(list(pubs.values()) + list(readers.values()))


def test_balancer_compresses_the_page_scripts(cluster):
    import gzip
    import urllib.request
    req = urllib.request.Request(f"http://127.0.0.1:{cluster.lb_port}/app.js", headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.headers["content-encoding"] == "gzip"
        body = gzip.decompress(r.read())
    assert body == (REPO / "web" / "app.js").read_bytes()


@pytest_twisted.inlineCallbacks
def test_legacy_sockets_behave_the_same_through_nginx(cluster):
    """Old-style pages on /webSocket/<key> through nginx, spread over the nodes: department
    messages, All and direct messages reach exactly their audience once, whichever node the
    sender and the receiver are on, in both directions between legacy sockets and WAMP."""
    dept, other = _unique("leg"), _unique("oth")
    users = [f"u{i}" for i in range(12)]
    sockets = yield defer.gatherResults(
        [connect_legacy(cluster.lb_port, names.user_key(dept, u), token(u, dept)) for u in users], consumeErrors=True)
    outsider = yield connect_legacy(cluster.lb_port, names.user_key(other, "zed"), token("zed", other))
    pubs = yield _publishers(cluster)
    wamp_members = {}
    try:
        for name, node in cluster.nodes.items():
            wamp_members[name] = yield connect(node.url, token(f"w-{name}", dept))
            yield wamp_members[name].listen(names.dept_topic(dept))
        # subscriptions propagate over the links (the legacy sockets' too: their bridge subscribes)
        yield wait_links_carry(cluster, [names.dept_topic(dept), names.dept_topic(other), names.TOPIC_ALL]
                               + [names.user_topic(dept, u) for u in users])
        texts = []
        for via, pub in sorted(pubs.items()):
            yield pub.call(names.PROC_SEND, dept, f"wamp via {via}")
            texts.append(f"wamp via {via}")
        for u, sock in zip(users[:3], sockets[:3]):
            sock.heartbeat()
            sock.send_json(dept, f"legacy from {u}")
            texts.append(f"legacy from {u}")
        sockets[4].send_json(names.user_key(dept, users[7]), "dm to u7")
        yield pubs["n2"].call(names.PROC_SEND, names.ALL, f"all {dept}")
        for via, pub in sorted(pubs.items()):
            yield pub.call(names.PROC_SEND, dept, f"marker via {via}")
            texts.append(f"marker via {via}")
        markers = [t for t in texts if t.startswith("marker")]
        yield wait_for(lambda: all(set(markers) <= set(s.messages()) for s in sockets)
                       and all(set(markers) <= set(m.messages(names.dept_topic(dept))) for m in wamp_members.values()),
                       30, "every legacy socket and WAMP member to receive the markers")
        yield task.deferLater(reactor, 0.5, lambda: None)
        for u, sock in zip(users, sockets):
            expected = sorted(texts + [f"all {dept}"] + (["dm to u7"] if u == users[7] else []))
            assert sorted(sock.messages()) == expected, u
            assert sock.errors() == []
        for name, m in wamp_members.items():
            assert sorted(m.messages(names.dept_topic(dept))) == sorted(texts), name
        assert outsider.messages() == [f"all {dept}"]
    finally:
        for c in list(sockets) + [outsider] + list(pubs.values()) + list(wamp_members.values()):
            yield c.close()
    # nginx's access log names the node of each legacy socket (logged when it closes)
    ports = {str(n.port): name for name, n in cluster.nodes.items()}
    log = cluster.nginx.prefix / "logs" / "access.log"

    def spread():
        lines = [ln for ln in log.read_text().splitlines() if f"/webSocket/{dept}_" in ln]
        return len(lines) == len(users) and {ports[ln.split("upstream=")[1].split()[0].rsplit(":", 1)[1]]
                                             for ln in lines}
    yield wait_for(spread, 10, "nginx to log the legacy sockets")
    assert spread() == set(cluster.nodes)
    assert "token=" not in log.read_text()


@defer.inlineCallbacks
def _online_or_none(asker, dept: str):
    """``deptcast.presence.online(dept)``, or ``None`` when a poll this fast is rate-limited."""
    try:
        answer = yield asker.call(names.PROC_PRESENCE_ONLINE, dept)
    except ApplicationError as e:
        if e.error != "deptcast.error.rate_limited":
            raise
        answer = None
    return answer


@defer.inlineCallbacks
def _online_on_every_node(askers, dept: str, users, what: str, timeout: float = 30.0):
    """Wait until ``deptcast.presence.online(dept)`` lists exactly ``users`` on every asker's node."""
    expected = {"dept": dept, "count": len(set(users)), "users": sorted(set(users))}
    answers = {}
    deadline = reactor.seconds() + timeout
    while True:
        for name, asker in askers.items():
            answers[name] = yield _online_or_none(asker, dept)
        if all(a == expected for a in answers.values()):
            return answers
        if reactor.seconds() > deadline:
            raise AssertionError(f"{what}: after {timeout}s the nodes answer {answers}, expected {expected}")
        yield task.deferLater(reactor, 0.1, lambda: None)


@pytest_twisted.inlineCallbacks
def test_presence_is_the_same_on_every_node_and_follows_a_killed_node(cluster):
    """Users on all three nodes (alice on two): every node lists the same users. SIGKILL one
    node: its users vanish from the others' answers (alice stays: she is on another node
    too), each with one offline event; they come back once they reconnect to the
    restarted node, which then answers the same as the others."""
    dept = _unique("pres")
    victim = "n3"
    placed = {"n1": ["a1", "a2", "alice"], "n2": ["b1", "b2"], "n3": ["c1", "c2", "c3", "alice"]}
    askers = {}
    clients = {}
    watcher = None
    try:
        for name, node in cluster.nodes.items():
            askers[name] = yield connect(node.url, token(f"ask-{name}", "ops", "publisher"))
        watcher = yield connect(cluster.nodes["n1"].url, token("watch", dept))
        topic = names.presence_topic(dept)
        yield watcher.listen(topic)
        for name, users in placed.items():
            clients[name] = yield _connect_all(cluster.nodes[name].url, [(u, dept, "member") for u in users])
        everyone = ["watch"] + [u for users in placed.values() for u in users]
        yield _online_on_every_node(askers, dept, everyone, "all users on every node")
        assert len(set(everyone)) == 9
        # one online event per user, whatever node it joined (alice's second session: none)
        yield wait_for(lambda: len(watcher.events[topic]) == 8, 30, "8 online events on n1")
        assert sorted(e["user"] for e in watcher.events[topic]) == sorted(set(everyone) - {"watch"})
        assert all(e["online"] is True and e["dept"] == dept for e in watcher.events[topic])
        assert [e["count"] for e in watcher.events[topic]] == list(range(2, 10))

        yield threads.deferToThread(cluster.nodes[victim].stop, signal.SIGKILL)
        del askers[victim]
        staying = ["watch", "a1", "a2", "alice", "b1", "b2"]
        yield _online_on_every_node(askers, dept, staying, f"{victim}'s users gone from the others")
        yield wait_for(lambda: len(watcher.events[topic]) == 11, 10, "3 offline events on n1")
        offline = watcher.events[topic][8:]
        assert sorted(e["user"] for e in offline) == ["c1", "c2", "c3"]
        assert all(e["online"] is False for e in offline) and offline[-1]["count"] == 6

        yield threads.deferToThread(cluster.nodes[victim].start, 90.0)
        askers[victim] = yield connect(cluster.nodes[victim].url, token(f"ask-{victim}", "ops", "publisher"))
        # nobody is on the restarted node yet: it learns the others' users from their snapshots
        yield _online_on_every_node(askers, dept, staying, "the restarted node in step")
        clients[victim] = yield _connect_all(cluster.nodes[victim].url, [(u, dept, "member") for u in placed[victim]])
        yield _online_on_every_node(askers, dept, everyone, f"{victim}'s users back on every node")
        yield wait_for(lambda: len(watcher.events[topic]) == 14, 10, "3 online events on n1")
        yield task.deferLater(reactor, 0.3, lambda: None)  # room for a duplicate event to show
        back = watcher.events[topic][11:]
        assert len(watcher.events[topic]) == 14
        assert sorted(e["user"] for e in back) == ["c1", "c2", "c3"] and all(e["online"] for e in back)
        assert back[-1]["count"] == 9
    finally:
        rest = [c for cs in clients.values() for c in cs] + list(askers.values()) + [watcher]
        yield _close([c for c in rest if c is not None and c.is_connected()])


# ----------------------------------------------------------------------------- restarts

#: how long a stopped node stays down before it starts again (its start adds 5-10 s here)
DOWN_SECONDS = 4.0


@pytest.mark.parametrize("victim,sig", [("n2", signal.SIGTERM), ("n3", signal.SIGKILL)],
                         ids=["sigterm", "sigkill"])
@pytest_twisted.inlineCallbacks
def test_restart_loses_and_duplicates_nothing(cluster, victim, sig):
    """A node stops (SIGTERM, or SIGKILL) and starts again while subscribers stay connected
    to the other nodes and messages go out via every node. Every accepted message reaches
    every subscriber exactly once: live for those that stayed connected (the restarted node
    held its sends until the peers' links were back), live or from history for those that
    reconnected through nginx; and a ``deptcast listen`` whose node it was prints each once."""
    yield _restart_scenario(cluster, victim, sig, hold=True)


@pytest_twisted.inlineCallbacks
def test_without_the_hold_the_seq_gap_fill_still_loses_nothing(cluster):
    """Second line of defence: with the hold off (DEPTCAST_LINK_WAIT=0 on the restarted node),
    a restart can leave the peers' links down while the restarted node accepts sends (the
    hole); subscribers notice the jump in ``seq`` and fetch what they missed from history, so
    each still gets every accepted message exactly once."""
    node = cluster.nodes["n2"]
    env = dict(node.env)
    node.env["DEPTCAST_LINK_WAIT"] = "0"
    try:
        yield _restart_scenario(cluster, "n2", signal.SIGKILL, hold=False)
    finally:
        node.env = env  # its next start holds sends again


@defer.inlineCallbacks
def _restart_scenario(cluster, victim, sig, hold: bool):
    """30 subscribers on the Python client spread by nginx, and a ``deptcast listen`` on the
    victim (its other URLs: the other nodes); senders via every node; the victim stops and
    starts again. Every accepted message reaches every subscriber's application and the
    listener's output exactly once, in order."""
    dept = _unique("ops")
    subs = [Subscriber(cluster.url, token(f"s{i}", dept)) for i in range(30)]
    yield defer.gatherResults([s.start() for s in subs], consumeErrors=True)
    for s in subs:
        s.nodes.append(cluster.node_of(s.client))
    on_victim = [s for s in subs if s.nodes[0] == victim]
    staying = [s for s in subs if s.nodes[0] != victim]
    assert on_victim and staying
    node = cluster.nodes[victim]
    victim_pid = node.proc.pid
    urls = [node.url] + [n.url for name, n in sorted(cluster.nodes.items()) if name != victim]
    listener = ListenProcess(node.node_dir.parent, urls, token("listener", dept), name=f"listen-{victim}-{sig}")
    try:
        yield wait_for(lambda: listener.connections(), 30, "deptcast listen to connect")
        assert listener.connections()[0].endswith(f"-{victim_pid}"), listener.connections()
        yield wait_links_carry(cluster, [names.dept_topic(dept), names.TOPIC_ALL, names.user_topic(dept, "listener")]
                               + [names.user_topic(dept, f"s{i}") for i in range(30)])

        senders = {name: Sender(n.url, f"sender-{name}", dept) for name, n in cluster.nodes.items()}
        runs = [s.run() for s in senders.values()]
        try:
            yield task.deferLater(reactor, 1.5, lambda: None)
            yield threads.deferToThread(node.stop, sig)
            stopped_at = reactor.seconds()
            # down long enough that the peers' links back off to retries seconds apart: the
            # restarted node's api is then ready before they reconnect
            yield task.deferLater(reactor, DOWN_SECONDS, lambda: None)
            yield threads.deferToThread(node.start, 90.0)
            ready_at = reactor.seconds()
            # keep sending via every node, the restarted one included, for a while
            yield wait_for(lambda: any(t >= ready_at for t, _ in senders[victim].latencies), 60,
                           "a send via the restarted node to be accepted")
            yield task.deferLater(reactor, 3.0, lambda: None)
        finally:
            for s in senders.values():
                s.running = False
            yield defer.gatherResults(runs, consumeErrors=True)
        yield wait_for(lambda: all(s.reconnects >= 1 for s in on_victim), 60,
                       "the restarted node's subscribers to reconnect through nginx")
        for s in subs:
            s.nodes.append(cluster.node_of(s.client))

        # the last message via each node is a marker; once every subscriber has them all, nothing is in flight
        markers = []
        for name, n in sorted(cluster.nodes.items()):
            marker_client = yield connect(n.url, token(f"marker-{name}", "ops", "publisher"))
            env = yield marker_client.call(names.PROC_SEND, dept, f"marker via {name}")
            markers.append(env)
            yield marker_client.close()
        marker_ids = {m["id"] for m in markers}
        yield wait_for(lambda: all(marker_ids <= s.seen_ids for s in subs), 30,
                       "every subscriber to receive the markers")
        yield wait_for(lambda: marker_ids <= {e["id"] for e in listener.envelopes()}, 30,
                       "deptcast listen to print the markers")
        yield wait_for(lambda: not any(s.gaps() for s in subs), 30, "every subscriber to fill its seq gaps")
        yield task.deferLater(reactor, 0.5, lambda: None)  # room for a late duplicate to show
    finally:
        listener_status = listener.stop()

    accepted = [e for s in senders.values() for e in s.accepted] + markers
    accepted_ids = {e["id"] for e in accepted}
    stored = yield _dept_history(subs[0].client.session, dept)
    stored_ids = {e["id"] for e in stored}
    assert accepted_ids <= stored_ids
    after_restart = [e for t, e in zip((t for t, _ in senders[victim].latencies), senders[victim].accepted)
                     if t >= ready_at]
    held = max(lat for t, lat in senders[victim].latencies if t >= stopped_at)
    printed = listener.envelopes()
    print(f"\n{signal.Signals(sig).name} {victim}: {len(accepted)} accepted "
          f"({', '.join(f'{n}: {len(s.accepted)}' for n, s in sorted(senders.items()))}), "
          f"{sum(s.failed for s in senders.values())} failed sends; "
          f"{len(on_victim)} subscribers reconnected to {sorted(set(s.nodes[-1] for s in on_victim))}, "
          f"{sum(s.stats.delivered_from_history for s in on_victim)} messages handed over from history, "
          f"{sum(s.stats.duplicates for s in on_victim)} duplicates dropped; "
          f"longest accepted send via {victim} after its restart took {held:.2f} s; "
          f"gate log: {cluster.gate_seconds(victim)}; down for {ready_at - stopped_at:.1f} s; "
          f"seq gap fills: {sum(s.stats.gap_fills for s in staying)} by subscribers that stayed, "
          f"{sum(s.stats.gap_fills for s in on_victim)} by those that reconnected; "
          f"messages the staying subscribers got from history: "
          f"{sum(s.stats.delivered_from_history for s in staying)}; "
          f"deptcast listen printed {len(printed)} lines via {len(listener.connections())} connections")
    assert after_restart, "no message was sent via the restarted node"
    if hold:
        # the restarted node held sends until its peers' links were up, and did not give up waiting
        assert "no working link" not in node.log_since_start()
        assert "are up after" in node.log_since_start()

    def assert_exactly_once(received, where):
        ids = [e["id"] for e in received]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        assert not twice, f"{where}: handed over twice: {twice}"
        mine = {i for i, e in zip(ids, received) if e["scope"] == "dept"}
        missing = accepted_ids - mine
        assert not missing, f"{where}: missed {len(missing)} accepted messages"
        assert mine <= stored_ids
        seqs = [e["seq"] for e in received if e["scope"] == "dept"]
        assert seqs == sorted(seqs), f"{where}: out of order"

    for s in subs:
        assert_exactly_once(s.received, f"subscriber on {s.nodes}")
        # the router never delivers an event twice (rlink bugs have done so after restarts)
        assert s.stats.live_repeats == 0, f"events delivered twice to a subscriber on {s.nodes}"
    # what the victim had answered before it stopped: a SIGKILL may leave its copies for the
    # links unwritten (the subscribers that stayed then read them from history)
    cut_off = {e["id"] for t, e in zip((t for t, _ in senders[victim].latencies), senders[victim].accepted)
               if t < stopped_at} if sig == signal.SIGKILL else set()
    for s in staying:
        assert s.reconnects == 0
        if hold:
            # never disconnected: every accepted message arrived live, the restarted node's first
            # ones included. A loaded machine may delay a link's event past the client's grace for
            # a seq gap, so history may bring one first; it still comes live after it.
            not_live = accepted_ids - cut_off - set(s.stats.live_ids)
            assert not not_live, f"subscriber on {s.nodes}: never received live: {sorted(not_live)}"
    # the listener's node was killed under it: it went on via another node and printed each message once
    assert_exactly_once(printed, "deptcast listen")
    assert len(listener.connections()) >= 2 and not listener.connections()[1].endswith(f"-{victim_pid}")
    assert "connection lost; reconnecting" in listener.err.read_text()
    assert listener_status == 0 and "Traceback" not in listener.err.read_text()

    # history is the same on every node after the restart
    readers = []
    for name, n in sorted(cluster.nodes.items()):
        readers.append((yield connect(n.url, token(f"reader-{name}", dept))))
    pages = []
    for r in readers:
        pages.append((yield _dept_history(r, dept)))
    assert pages[0] == stored and pages[1] == stored and pages[2] == stored
    yield _close(readers + [s.client for s in senders.values() if s.client] + [])
    yield defer.gatherResults([s.close() for s in subs], consumeErrors=True)


@pytest_twisted.inlineCallbacks
def test_a_node_whose_peer_is_down_holds_sends_then_accepts_them(tmp_path):
    """A dead peer cannot stop the cluster: after DEPTCAST_LINK_WAIT the node accepts the
    held sends and says in its log which peer's link it did not see."""
    with pg_schema("deptcast_lonely") as db:
        specs = [NodeSpec("n1", "127.0.0.1", free_port()), NodeSpec("n2", "127.0.0.1", free_port())]
        layout = init_cluster(specs, db, tmp_path)
        node = Node(layout.node_dirs["n1"], port=specs[0].port, config=None, name="n1",
                    env={"DEPTCAST_LINK_WAIT": "3"})
        yield threads.deferToThread(node.start, 90.0, True, "started")  # it holds sends: not serving yet
        try:
            assert "links from all peers" not in node.log_since_start()
            alice = yield connect(node.url, token("alice", "solo"))
            yield alice.listen(names.dept_topic("solo"))
            env = yield alice.call(names.PROC_SEND, "solo", "held, then sent")
            assert env["message"] == "held, then sent"
            yield wait_for(lambda: alice.messages(names.dept_topic("solo")) == ["held, then sent"], 10, "the event")
            yield wait_for(lambda: "no working link from n2 after 3 s; accepting sends anyway"
                           in node.log_since_start(), 10, "the warning")
            yield alice.close()
        finally:
            yield threads.deferToThread(node.stop)


# ----------------------------------------------------------------------------- demo


def _free_port_run(count: int) -> int:
    """The first of ``count`` consecutive free loopback ports."""
    from tests.support.cluster import port_open
    for _ in range(50):
        base = free_port()
        if base + count < 65536 and not any(port_open(base + i) for i in range(count)):
            return base
    raise RuntimeError("no run of free ports")


@pytest_twisted.inlineCallbacks
def test_demo_starts_three_nodes_and_nginx_and_stops_on_ctrl_c(tmp_path):
    from components.core.tokens import issue_token
    from tests.support.cluster import port_open

    base, lb = _free_port_run(3), free_port()
    out = tmp_path / "demo"
    with pg_schema("deptcast_demo") as db:
        proc = subprocess.Popen([str(Path(sys.executable).with_name("deptcast")), "cluster", "demo", "--db", db,
                                 "--out", str(out), "--base-port", str(base), "--lb-port", str(lb)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        lines = []

        def read_until_connect():
            for line in proc.stdout:
                lines.append(line)
                if line.startswith("connect to"):
                    return True
            return False
        try:
            ready = yield threads.deferToThread(read_until_connect)
            assert ready, "".join(lines)
            yield wait_for(lambda: port_open(lb), 30, "nginx to listen")
            secret = (out / "jwt.secret").read_text().strip()
            alice = yield connect(f"ws://127.0.0.1:{lb}/ws", issue_token(secret, "alice", "demo"), timeout=30)
            yield alice.listen(names.dept_topic("demo"))
            env = yield alice.call(names.PROC_SEND, "demo", "hello cluster")
            yield wait_for(lambda: alice.messages(names.dept_topic("demo")) == ["hello cluster"], 10, "the echo")
            assert env["message"] == "hello cluster"
            yield alice.close()
        finally:
            proc.send_signal(signal.SIGINT)
            rest = yield threads.deferToThread(proc.communicate, None, 60)
        assert proc.returncode == 0, "".join(lines) + rest[0]
        assert "stopped" in rest[0]
        for port in (lb, base, base + 1, base + 2):
            assert not port_open(port)


# ----------------------------------------------------------------------------- receipts


@pytest_twisted.inlineCallbacks
def test_receipts_acknowledged_on_different_nodes_add_up(cluster):
    """Three members on three nodes acknowledge one notice, each on its own node: every node
    answers the same counts, and the sender's live counts (on a fourth session, node n1)
    reach the final ones whichever node recorded the last receipt."""
    dept = _unique("rcpt")
    urls = {name: node.url for name, node in cluster.nodes.items()}
    ann = yield connect(urls["n1"], token("ann", dept))
    bob = yield connect(urls["n2"], token("bob", dept))
    cy = yield connect(urls["n3"], token("cy", dept))
    pat = yield connect(urls["n1"], token("pat", dept, "publisher"))
    others = []
    for name in ("n2", "n3"):
        others.append((yield connect(urls[name], token("pat", dept, "publisher"))))
    updates = []
    try:
        topic = names.TOPIC_RECEIPTS + f"{dept}_pat"
        yield pat.subscribe(lambda counts: updates.append(counts), topic)
        yield wait_links_carry(cluster, [topic])

        @defer.inlineCallbacks
        def until(ask, want, what):
            deadline = reactor.seconds() + 60
            while True:
                got = yield ask()
                if got == want or reactor.seconds() > deadline:
                    assert got == want, f"{what}: {got!r}"
                    return
                yield task.deferLater(reactor, 0.3, lambda: None)

        yield until(lambda: pat.call(names.PROC_ROSTER, dept).addCallback(lambda r: len(r["users"])), 3,
                    "the roster, signed in on three nodes")
        envelope = yield pat.call(names.PROC_SEND, dept, "evacuation drill at noon")
        nid = envelope["id"]
        yield ann.call(names.PROC_ACK, [nid], "seen")
        yield bob.call(names.PROC_ACK, [nid], "delivered")
        yield cy.call(names.PROC_ACK, [nid], "delivered")
        yield cy.call(names.PROC_ACK, [nid], "seen")
        want = {"id": nid, "audience": 3, "seen": 2, "delivered": 1, "pending": 0}
        for session, name in [(pat, "n1")] + list(zip(others, ("n2", "n3"))):
            yield until(lambda s=session: s.call(names.PROC_RECEIPTS, nid), want, f"the counts on {name}")
        yield wait_for(lambda: updates and updates[-1] == want, 30, "the live counts on n1")
        seen = yield others[1].call(names.PROC_RECIPIENTS, nid, "seen")
        assert [u["user"] for u in seen["users"]] == ["ann", "cy"]
    finally:
        for s in [ann, bob, cy, pat] + others:
            yield s.close()
