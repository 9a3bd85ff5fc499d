"""Chaos on the database of a 2-node cluster: PostgreSQL stopped, frozen and restarted under
load, on a private PostgreSQL server (never the shared one).

Each test runs senders on every interface (WAMP on both nodes, HTTP on n1, a legacy page on
n2) and followers on both nodes, breaks the database, heals it, and asserts:

- no accepted message lost or duplicated: every follower shows exactly what the store holds
  on the topic, each once, in order (live, or by position from history);
- every refused call got ``deptcast.error.unavailable`` with a text free of internals, within
  the store deadline (no call hangs), and the nodes never dropped a connection;
- service came back by itself: on both nodes, a send issued after the database was back was
  accepted within :data:`RECOVERY_BOUND` seconds;
- the log says it once: one line per node when writes went away, one when they came back.

The store deadline is :data:`STORE_TIMEOUT` (2 s, against the default 5 s) to keep the suite
short; the freeze lasts longer than it.
"""

import time
from typing import Awaitable, Callable, Dict

import psycopg
import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from twisted.internet import defer, threads

from components.core.errors import UNAVAILABLE
from components.core.names import PROC_SEND

from components.core.history import HistoryRequest
from components.core.names import client_topics
from components.core.targets import SCOPE_DEPT, Target
from components.core.tokens import Identity
from components.service.storeprobe import PROBE_INTERVAL
from components.store.postgres import _APPEND_LOCK, PostgresStore

from tests.chaos.load import (Follower, HttpSender, LegacySender, WampSender, _sleep, check_delivery,
                              check_refusals, legacy_texts_stored, log_lines, wait_followers)
from tests.chaos.postgres import PrivatePostgres, why_not
from tests.support.cluster import Cluster
from tests.support.nodes import token
from tests.support.wamp import connect, wait_for

STORE_TIMEOUT = 2.0
#: seconds from the database's return to an accepted send on every node
RECOVERY_BOUND = 10.0
#: the api's writer threads on PostgreSQL (components.wamp.api)
WRITERS = 4

pytestmark = pytest.mark.skipif(why_not() is not None, reason=str(why_not()))


@pytest.fixture(scope="module")
def pg():
    server = PrivatePostgres().init().start()
    yield server
    server.destroy()


@pytest.fixture(scope="module")
def cluster(pg, tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("chaos-pg"), pg.url, count=2,
                env={"DEPTCAST_STORE_TIMEOUT": str(STORE_TIMEOUT)})
    c.start()
    yield c
    c.stop()


async def under_load(cluster: Cluster, pg: PrivatePostgres, dept: str,
                     fault: Callable[[], Awaitable[float]], record_property, felt: bool = True) -> Dict[str, float]:
    """Run the load, break and heal the database with ``fault`` (it returns the monotonic time
    the database was back), check everything, and return the measured times.

    :param felt: whether the outage must be seen (a restart may fall between two calls)
    """
    topic = f"deptcast.dept.{dept}"
    nodes = list(cluster.nodes.values())
    marks = {n.name: len(n.log_text()) for n in nodes}
    followers = [Follower(n.url, token(f"f{i}{n.name}", dept), topic) for n in nodes for i in range(2)]
    for f in followers:
        await f.start()
    wamp = [WampSender(to=dept, prefix=f"wamp-{n.name}", url=n.url, token=token(f"s{n.name}", dept)) for n in nodes]
    http = HttpSender(to=dept, prefix="http", interval=0.25, port=nodes[0].port, token=token("web", dept))
    legacy = LegacySender(to=dept, prefix="legacy", interval=0.25, port=nodes[1].port, key=f"{dept}_old",
                          token=token("old", dept))
    senders = [*wamp, http, legacy]
    for s in senders:
        s.start()
    await _sleep(1.0)

    broken = time.monotonic()
    healed = await fault()
    # service comes back by itself: a send issued after the heal is accepted on every node
    deadline = healed + RECOVERY_BOUND + 20
    while any(s.first_accepted_after(healed) is None for s in wamp) and time.monotonic() < deadline:
        await _sleep(0.1)
    recovery = {s.prefix: (s.first_accepted_after(healed) or float("inf")) - healed for s in wamp}
    await _sleep(1.0)
    for s in senders:
        await s.stop()

    rows = await wait_followers(followers, pg.url, topic)
    check_delivery(rows, followers, senders)
    refusals = check_refusals(senders)
    # no call hung: each answered within the deadline (and some slack for a busy machine)
    longest = max(s.longest_call(broken) for s in wamp + [http])
    assert longest < STORE_TIMEOUT + 5, f"a call took {longest:.1f} s"
    # every legacy frame was either stored or answered with an error frame
    legacy_stored = legacy_texts_stored(legacy, rows)
    assert legacy_stored + len(legacy.all_errors()) >= len(legacy.outcomes)
    # a refused message is stored after all only if the store was already running it at its
    # deadline (then it is published late, and its sender could not know): at most one per
    # writer thread of each node; never one that waited for a thread
    texts = {r[2] for r in rows}
    refused_but_stored = sum(1 for s in wamp + [http] for o in s.refused if o.text in texts)
    refused_but_stored += max(0, legacy_stored + len(legacy.all_errors()) - len(legacy.outcomes))
    assert refused_but_stored <= WRITERS * len(nodes), refused_but_stored
    for f in followers:
        await f.close()

    # a pool that went down comes back with the next call or store probe (every 5 s)
    def settled(n) -> bool:
        log = n.log_text()[marks[n.name]:]
        return all(len(log_lines(log, f"deptcast store: {what} unavailable"))
                   == len(log_lines(log, f"deptcast store: {what} available again")) for what in ("writes", "reads"))
    await wait_for(lambda: all(settled(n) for n in nodes), timeout=PROBE_INTERVAL + 5,
                   what="the store's state lines to settle")
    for n in nodes:
        log = n.log_text()[marks[n.name]:]
        down = log_lines(log, "deptcast store: writes unavailable")
        up = log_lines(log, "deptcast store: writes available again")
        assert len(down) == len(up) == 1 if felt else len(down) == len(up) <= 1, log[-3000:]
        # reads are only down if a read (a follower's, the store probe's) came during the outage
        assert (len(log_lines(log, "deptcast store: reads unavailable"))
                == len(log_lines(log, "deptcast store: reads available again")) <= 1), log[-3000:]
        assert "Traceback" not in log
    assert max(recovery.values()) < RECOVERY_BOUND, recovery
    accepted = sum(len(s.accepted) for s in senders)
    figures = {"outage_s": round(healed - broken, 2), "recovery_s": max(recovery.values()),
               "accepted": accepted, "stored": len(rows), "refusals": sum(refusals.values()),
               "refused_but_stored": refused_but_stored,
               "reconnects": sum(f.reconnects for f in followers), "gap_fills": sum(f.gap_fills for f in followers)}
    for k, v in figures.items():
        record_property(k, v)
    print(f"\n{dept}: {figures}; recovery per node {recovery}")
    return figures


@pytest_twisted.ensureDeferred
async def test_postgres_stopped_and_started_again(cluster, pg, record_property):
    async def fault() -> float:
        await threads.deferToThread(pg.stop, "fast")
        await _sleep(3.0)
        await threads.deferToThread(pg.start)
        return time.monotonic()
    figures = await under_load(cluster, pg, "chaos-stop", fault, record_property)
    assert figures["refusals"] > 0  # the outage was felt, and answered


@pytest_twisted.ensureDeferred
async def test_postgres_frozen_longer_than_the_deadline_and_thawed(cluster, pg, record_property):
    async def fault() -> float:
        pg.freeze()
        await _sleep(STORE_TIMEOUT * 2.5)
        pg.thaw()
        return time.monotonic()
    figures = await under_load(cluster, pg, "chaos-freeze", fault, record_property)
    assert figures["refusals"] > 0


@pytest_twisted.ensureDeferred
async def test_postgres_restarted(cluster, pg, record_property):
    async def fault() -> float:
        await threads.deferToThread(pg.restart, "fast")
        return time.monotonic()
    await under_load(cluster, pg, "chaos-restart", fault, record_property, felt=False)


def test_connections_that_died_while_idle_are_replaced_without_failing_a_call(pg):
    """A server restart kills every idle connection of the store's threads; the first call on
    each must not fail for it (the store is back): the write begins again on a new connection,
    the read is repeated."""
    with psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE idle_connections")
    store = PostgresStore(pg.url.rsplit("/", 1)[0] + "/idle_connections", timeout=STORE_TIMEOUT)
    ann = Identity("ann", "idle")
    request = HistoryRequest(client_topics("idle", "ann"))
    try:
        store.migrate()
        store.append(Target(SCOPE_DEPT, "idle", dept="idle"), ann, "before", 1)
        assert [e["message"] for e in store.history(request)] == ["before"]
        pg.restart()
        store.append(Target(SCOPE_DEPT, "idle", dept="idle"), ann, "after", 2)
        assert [e["message"] for e in store.history(request)] == ["before", "after"]
    finally:
        store.close()


def node_appends_waiting(conn: psycopg.Connection) -> int:
    """How many of the nodes' transactions wait for the append lock that ``conn`` holds."""
    return conn.execute(
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
        " WHERE l.locktype = 'advisory' AND l.classid = %s AND NOT l.granted"
        " AND a.application_name = 'deptcast' AND l.pid <> pg_backend_pid()", (_APPEND_LOCK,)).fetchone()[0]


@pytest_twisted.ensureDeferred
async def test_keyed_retries_after_unavailable_while_postgres_froze_mid_send_give_one_notice_each(cluster, pg):
    """Ten keyed sends on n1 are answered; ten more are under way on n1 when PostgreSQL
    freezes past the deadline: each of those is answered ``unavailable``. Once it thaws, the
    sender retries every one with its key on n2 (and once more on n1): each notice reaches the
    followers of both nodes exactly once, and every answer for a key is its first envelope.

    "Under way" is a condition, not a moment: the test holds the append lock of the nodes'
    schema (each append takes it first, in its transaction), so the second ten cannot commit;
    it freezes the server once one of n1's transactions waits for that lock."""
    dept = "chaos-keys"
    topic = f"deptcast.dept.{dept}"
    n1, n2 = cluster.nodes.values()
    followers = [await connect(n.url, token(f"k{n.name}", dept)) for n in (n1, n2)]
    for f in followers:
        await f.listen(topic)
    senders = [await connect(n.url, token("pat", dept, "publisher")) for n in (n1, n2)]

    async def send(session, i: int):
        try:
            return await session.call(PROC_SEND, dept, f"notice {i}", key=f"keyed-{i}")
        except ApplicationError as e:
            return e.error

    async def answered(session, i: int):
        """:func:`send` again with its key until it is answered (the store may be coming back:
        the server was restarted or thawed just before)."""
        deadline = time.monotonic() + RECOVERY_BOUND + 20
        while True:
            got = await send(session, i)
            if isinstance(got, dict) or time.monotonic() > deadline:
                return got
            await _sleep(0.2)

    blocker = psycopg.connect(cluster.db, autocommit=True, connect_timeout=5)
    try:
        # one after the other: concurrent sends are group commits of several writers, whose
        # events may leave in another order than their seq (the shipped client reorders them)
        first_ten = [await answered(senders[0], i) for i in range(10)]
        assert all(isinstance(o, dict) for o in first_ten), first_ten
        assert sorted(o["seq"] for o in first_ten) == list(range(1, 11)), first_ten
        blocker.execute("SELECT pg_advisory_lock(%s, hashtext(current_schema()))", (_APPEND_LOCK,))
        under_way = [defer.ensureDeferred(send(senders[0], i)) for i in range(10, 20)]
        await wait_for(lambda: node_appends_waiting(blocker) > 0, 30, "a send of n1 to wait for the append lock")
        pg.freeze()
        try:
            refused = await defer.gatherResults(under_way)
        finally:
            pg.thaw()
        assert refused == [UNAVAILABLE] * 10
        blocker.execute("SELECT pg_advisory_unlock(%s, hashtext(current_schema()))", (_APPEND_LOCK,))
        outcomes = first_ten + refused
        answers = {}
        for i in range(20):
            got = await answered(senders[1], i)
            assert isinstance(got, dict), got
            if isinstance(outcomes[i], dict):
                assert got == outcomes[i]
            answers[i] = got
            assert await send(senders[0], i) == got
        marker = await senders[0].call(PROC_SEND, dept, "marker")
        for f in followers:
            await wait_for(lambda f=f: marker in f.events[topic], 30, "the marker")
        expected = sorted(answers.values(), key=lambda e: e["seq"]) + [marker]
        for f in followers:
            assert f.events[topic] == expected
        assert [e["seq"] for e in expected] == list(range(1, 22))
    finally:
        pg.thaw()
        blocker.close()
        for s in senders + followers:
            await s.close()
