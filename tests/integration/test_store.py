"""One store test suite, run against both implementations: SQLite (a temp file) and
PostgreSQL (a schema of its own on the machine's server, dropped afterwards)."""

import threading


from components.core.targets import SCOPE_ALL, SCOPE_DEPT, SCOPE_USER, Target, parse_target
from components.core.history import DEFAULT_MAX_BYTES, ID_WIDTH, HistoryRequest, envelope_bytes
from components.core.names import client_topics
from components.store import open_store
from components.store import postgres as pg_module
from components.store import sql
from components.store import sqlite as sqlite_module
from components.core.tokens import Identity
from tests.support.pg import pg_schema
from tests.support.stores import history_or_pruned

def history(store, reader: Identity, after: int = 0, limit: int = 100, latest: bool = False, positions=None,
            max_bytes: int = DEFAULT_MAX_BYTES):
    """``store.history`` for ``reader``'s topics."""
    return store.history(HistoryRequest(client_topics(reader.dept, reader.user), after, positions, limit, latest,
                                        max_bytes))


ALICE = Identity("alice", "hr", "member")
BOB = Identity("bob", "hr", "member")
CAROL = Identity("carol", "it", "member")
BOSS = Identity("boss", "mgmt", "publisher")

HR = Target(SCOPE_DEPT, "hr", dept="hr")
IT = Target(SCOPE_DEPT, "it", dept="it")
ALL = Target(SCOPE_ALL, "All")
TO_BOB = Target(SCOPE_USER, "hr_bob", dept="hr", user="bob")
TO_CAROL = Target(SCOPE_USER, "it_carol", dept="it", user="carol")


def migrations_of(db: str):
    return sql.migrations(sql.POSTGRES if db.startswith("postgresql://") else sql.SQLITE)


def test_open_store_picks_the_implementation(db):
    s = open_store(db)
    try:
        expected = pg_module.PostgresStore if db.startswith("postgresql://") else sqlite_module.SqliteStore
        assert isinstance(s, expected)
    finally:
        s.close()


def test_migrate_is_idempotent(db):
    s = open_store(db)
    try:
        assert s.migrate() == len(migrations_of(db))
        assert s.migrate() == len(migrations_of(db))
    finally:
        s.close()


def test_append_returns_the_envelope(store):
    env = store.append(HR, ALICE, "hello hr", 1700000000123)
    assert env == {"id": env["id"], "scope": "dept", "target": "hr", "sender": "alice",
                   "sender_dept": "hr", "message": "hello hr", "ts": 1700000000123, "seq": 1}
    assert len(env["id"]) == ID_WIDTH and env["id"].isdigit()


def test_ids_are_unique_and_sort_in_send_order(store):
    ids = [store.append(HR, ALICE, f"m{i}", i)["id"] for i in range(20)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 20


def test_seq_counts_per_topic(store):
    seqs = [(t.topic, store.append(t, BOSS, "x", 1)["seq"])
            for t in [HR, HR, IT, ALL, HR, TO_BOB, ALL, TO_BOB, TO_CAROL]]
    assert seqs == [("deptcast.dept.hr", 1), ("deptcast.dept.hr", 2), ("deptcast.dept.it", 1),
                    ("deptcast.all", 1), ("deptcast.dept.hr", 3), ("deptcast.user.hr_bob", 1),
                    ("deptcast.all", 2), ("deptcast.user.hr_bob", 2), ("deptcast.user.it_carol", 1)]
    # history carries the same numbers
    assert [(e["target"], e["seq"]) for e in history(store, BOB, 0, 100)] == [
        ("hr", 1), ("hr", 2), ("All", 1), ("hr", 3), ("hr_bob", 1), ("All", 2), ("hr_bob", 2)]


def test_upgrade_from_schema_1_keeps_old_messages(db, monkeypatch):
    full = sql.migrations
    monkeypatch.setattr(sql, "migrations", lambda dialect: full(dialect)[:1])
    s = open_store(db)
    assert s.migrate() == 1
    old_row = ("INSERT INTO messages (scope, target, target_dept, sender, sender_dept, message, ts)"
               " VALUES ('dept', 'hr', 'hr', 'alice', 'hr', 'old', 1)")
    s._conn().execute(old_row)
    s.close()
    monkeypatch.setattr(sql, "migrations", full)
    s = open_store(db)
    try:
        assert s.migrate() == len(migrations_of(db))
        [old] = history(s, BOB, 0, 10)
        assert old["message"] == "old" and "seq" not in old
        assert s.append(HR, ALICE, "new", 2)["seq"] == 1
    finally:
        s.close()


def test_history_shows_each_reader_only_what_it_may_see(store):
    sent = {
        "hr": store.append(HR, ALICE, "to hr", 1),
        "it": store.append(IT, CAROL, "to it", 2),
        "all": store.append(ALL, BOSS, "to all", 3),
        "bob": store.append(TO_BOB, ALICE, "to bob", 4),
        "carol": store.append(TO_CAROL, BOSS, "to carol", 5),
    }
    seen = lambda reader: [e["message"] for e in history(store, reader, 0, 100)]  # noqa: E731 (a one-line helper)
    assert seen(ALICE) == ["to hr", "to all"]
    assert seen(BOB) == ["to hr", "to all", "to bob"]
    assert seen(CAROL) == ["to it", "to all", "to carol"]
    assert seen(BOSS) == ["to all"]
    # history returns exactly the envelopes that append returned
    assert history(store, BOB, 0, 100) == [sent["hr"], sent["all"], sent["bob"]]


def test_history_after_and_limit(store):
    envs = [store.append(HR, ALICE, f"m{i}", i) for i in range(10)]
    assert history(store, BOB, 0, 3) == envs[:3]
    assert history(store, BOB, int(envs[2]["id"]), 3) == envs[3:6]
    assert history(store, BOB, int(envs[-1]["id"]), 100) == []
    assert history(store, BOB, 0, 100) == envs


def test_history_latest_gives_the_newest_oldest_first(store):
    envs = [store.append(HR, ALICE, f"m{i}", i) for i in range(10)]
    store.append(IT, CAROL, "not for bob", 10)
    assert history(store, BOB, 0, 3, latest=True) == envs[7:]
    assert history(store, BOB, int(envs[5]["id"]), 100, latest=True) == envs[6:]
    assert history(store, BOB, int(envs[-1]["id"]), 3, latest=True) == []


def test_messages_persist_across_reopen(db):
    s = open_store(db)
    s.migrate()
    env = s.append(ALL, BOSS, "kept", 42)
    s.close()
    s = open_store(db)
    try:
        assert s.migrate() == len(migrations_of(db))
        assert history(s, CAROL, 0, 10) == [env]
        later = s.append(ALL, BOSS, "later", 43)
        assert later["id"] > env["id"]
        assert (env["seq"], later["seq"]) == (1, 2)
    finally:
        s.close()


def test_concurrent_appends_from_several_threads(db):
    """The threaded use the components make: every append gets its own id, none is lost."""
    s = open_store(db)
    s.migrate()
    lock = threading.Lock()  # SQLite connections are used by one thread at a time
    is_pg = db.startswith("postgresql://")
    ids, errors = [], []

    def worker(n):
        try:
            for i in range(25):
                if is_pg:
                    env = s.append(HR, ALICE, f"{n}-{i}", i)
                else:
                    with lock:
                        env = s.append(HR, ALICE, f"{n}-{i}", i)
                with lock:
                    ids.append(env["id"])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        assert len(set(ids)) == 100
        seen = history(s, BOB, 0, 1000)
        assert sorted(ids) == [e["id"] for e in seen]
        # one topic: seq 1..100 without gaps, in the order of the ids
        assert [e["seq"] for e in seen] == list(range(1, 101))
    finally:
        s.close()


def test_postgres_migration_is_safe_when_nodes_start_at_once():
    """Several nodes migrating one fresh schema at the same moment: one applies each
    migration, all end on the same version, the schema is usable."""
    with pg_schema("deptcast_migrate") as url:
        stores = [open_store(url) for _ in range(4)]
        versions, errors = [], []
        barrier = threading.Barrier(len(stores))

        def start(s):
            try:
                barrier.wait(10)
                versions.append(s.migrate())
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=start, args=(s,)) for s in stores]
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert errors == []
            assert versions == [len(migrations_of(url))] * len(stores)
            env = stores[0].append(HR, ALICE, "after", 1)
            assert history(stores[1], BOB, 0, 10) == [env]
            # several nodes sending to one topic share its counter
            assert [st.append(HR, ALICE, "more", 2)["seq"] for st in stores] == [2, 3, 4, 5]
        finally:
            for s in stores:
                s.close()


ONCO_BOB = Identity("bob", "onco", "member")
TO_ONCO_BOB = Target(SCOPE_USER, "onco_bob", dept="onco", user="bob")


def test_a_user_is_the_pair_of_department_and_user_id(store):
    mine = store.append(TO_BOB, ALICE, "for hr's bob", 1)
    theirs = store.append(TO_ONCO_BOB, BOSS, "for onco's bob", 2)
    assert (mine["seq"], theirs["seq"]) == (1, 1)  # two topics, two counters
    assert history(store, BOB) == [mine]
    assert history(store, ONCO_BOB) == [theirs]
    assert history(store, BOB, positions={"deptcast.user.hr_bob": 0}) == [mine]


def test_upgrade_to_schema_3_gives_direct_messages_their_department(db, monkeypatch):
    """Rows stored while deptcast.user.<user> was one inbox for every department's bob get
    their own topics and counters, numbered in send order."""
    full = sql.migrations
    monkeypatch.setattr(sql, "migrations", lambda dialect: full(dialect)[:2])
    s = open_store(db)
    assert s.migrate() == 2
    rows = [("user", "hr_bob", "hr", "bob", "a", 1), ("user", "onco_bob", "onco", "bob", "b", 2),
            ("dept", "hr", "hr", None, "c", 1), ("user", "hr_bob", "hr", "bob", "d", 3)]
    p = "%s" if db.startswith("postgresql://") else "?"
    for scope, target, dept, user, text, seq in rows:
        s._conn().execute("INSERT INTO messages (scope, target, target_dept, target_user, sender, sender_dept,"
                          f" message, ts, seq) VALUES ({p}, {p}, {p}, {p}, 'boss', 'mgmt', {p}, 1, {p})",
                          (scope, target, dept, user, text, seq))
    s._conn().execute("INSERT INTO topic_seq (topic, seq) VALUES ('deptcast.user.bob', 3), ('deptcast.dept.hr', 1)")
    s.close()
    monkeypatch.setattr(sql, "migrations", full)
    s = open_store(db)
    try:
        assert s.migrate() == len(migrations_of(db))
        assert [(e["message"], e["seq"]) for e in history(s, BOB)] == [("a", 1), ("c", 1), ("d", 2)]
        assert [(e["message"], e["seq"]) for e in history(s, ONCO_BOB)] == [("b", 1)]
        # the counters go on from there
        assert s.append(TO_BOB, ALICE, "e", 4)["seq"] == 3
        assert s.append(TO_ONCO_BOB, ALICE, "f", 5)["seq"] == 2
        assert s.append(HR, ALICE, "g", 6)["seq"] == 2
    finally:
        s.close()


def test_history_by_position_gives_exactly_what_is_past_each_position(store):
    sent = [store.append(t, BOSS, f"m{i}", i) for i, t in enumerate([HR, ALL, HR, TO_BOB, IT, HR, ALL, TO_BOB])]
    by_topic = {}
    for env in sent:
        by_topic.setdefault(parse_target(env["target"]).topic, []).append(env)
    got = history(store, BOB, positions={"deptcast.dept.hr": 1, "deptcast.all": 0, "deptcast.user.hr_bob": 2})
    assert got == [e for e in sent if e in by_topic["deptcast.dept.hr"][1:] + by_topic["deptcast.all"]]
    # a topic left out is not read; paging by positions returns a prefix of each topic
    first = history(store, BOB, positions={"deptcast.dept.hr": 0, "deptcast.all": 0}, limit=3)
    assert first == [sent[0], sent[1], sent[2]]
    rest = history(store, BOB, positions={"deptcast.dept.hr": 2, "deptcast.all": 1}, limit=3)
    assert rest == [sent[5], sent[6]]


def test_heads_give_each_topics_last_seq(store):
    for _ in range(3):
        store.append(HR, ALICE, "to hr", 1)
    store.append(TO_BOB, BOSS, "to bob", 1)
    assert store.heads(["deptcast.dept.hr", "deptcast.user.hr_bob", "deptcast.dept.nobody"]) == \
        {"deptcast.dept.hr": 3, "deptcast.user.hr_bob": 1}
    assert store.heads([]) == {}
    # more topics than one statement takes
    many = [f"deptcast.user.hr_u{i}" for i in range(sql.HEADS_CHUNK + 5)] + ["deptcast.dept.hr"]
    assert store.heads(many) == {"deptcast.dept.hr": 3}


def test_reading_one_topic_past_a_seq(store):
    """What the legacy fan-out reads when it missed events: ``topics=(T,)``, ``positions={T: S}``."""
    sent = [store.append(HR, ALICE, f"m{i}", 1) for i in range(5)]
    store.append(IT, CAROL, "other topic", 1)
    rows = store.history(HistoryRequest(("deptcast.dept.hr",), positions={"deptcast.dept.hr": 2}, limit=2))
    assert rows == sent[2:4]


def test_history_answers_are_bounded_by_bytes(store):
    big = "x" * 20_000
    sent = [store.append(HR, ALICE, big, i) for i in range(10)]
    # each counts at the most it can take in a WAMP message: six bytes a character, plus room
    two = 2 * envelope_bytes(big)
    page = history(store, BOB, limit=100, max_bytes=two)
    assert page == sent[:2]
    assert history(store, BOB, after=int(page[-1]["id"]), limit=100, max_bytes=two) == sent[2:4]
    assert history(store, BOB, limit=100, latest=True, max_bytes=two) == sent[8:]
    assert history(store, BOB, limit=100, max_bytes=two - 1) == sent[:1]
    # one envelope larger than the bound still comes, alone: the caller can always page on
    assert history(store, BOB, limit=100, max_bytes=10) == sent[:1]


def test_postgres_ids_sort_in_commit_order():
    """A transaction that took its id first commits first: a reader that has seen an id has
    seen every smaller one, so history(after=<id>) never skips a late commit."""
    with pg_schema("deptcast_order") as url:
        first, second = open_store(url), open_store(url)
        first.migrate()
        try:
            started, release = threading.Event(), threading.Event()
            original = first._append_lock

            def slow_lock(conn):
                original(conn)
                started.set()
                release.wait(10)
            first._append_lock = slow_lock
            results = {}
            t = threading.Thread(target=lambda: results.update(a=first.append(HR, ALICE, "slow", 1)))
            t.start()
            assert started.wait(10)
            t2 = threading.Thread(target=lambda: results.update(b=second.append(IT, CAROL, "fast", 2)))
            t2.start()
            t2.join(0.5)
            assert t2.is_alive()  # the second append waits for the first to commit
            release.set()
            t.join(10)
            t2.join(10)
            assert results["a"]["id"] < results["b"]["id"]
        finally:
            first.close()
            second.close()


def test_revocations_are_kept_read_past_a_position_and_pruned(store, db):
    first = store.revoke("cardio", "bob", 1_000)
    second = store.revoke("onco", "bob", 2_000)
    assert second > first
    assert store.revocations_since(0, 10**9) == [(first, "cardio", "bob", 1_000), (second, "onco", "bob", 2_000)]
    # past the last id seen, and again those from a second on (a row that committed late)
    assert store.revocations_since(first, 10**9) == [(second, "onco", "bob", 2_000)]
    assert store.revocations_since(second, 1_500) == [(second, "onco", "bob", 2_000)]
    assert store.prune_revocations(1_500) == 1
    store.close()
    reopened = open_store(db)
    try:
        assert reopened.revocations_since(0, 0) == [(second, "onco", "bob", 2_000)]
    finally:
        reopened.close()


def test_histories_read_together_answer_exactly_what_each_read_alone_answers(store):
    """``history_many`` (what a node reads for concurrent callers) against ``history`` call by
    call: every mode, page sizes, byte bounds, positions past the head, pruned positions."""
    import random
    from components.core.retention import PrunedHistory

    rnd = random.Random(22)
    readers = [Identity(f"u{i}", dept, "member") for i, dept in enumerate(["hr", "hr", "it", "ops", "hr", "it"])]
    targets = [HR, IT, ALL, TO_BOB, Target(SCOPE_DEPT, "ops", dept="ops"),
               Target(SCOPE_USER, "hr_u0", dept="hr", user="u0"), Target(SCOPE_USER, "it_u2", dept="it", user="u2")]
    sent = [store.append(rnd.choice(targets), BOSS, "x" * rnd.choice([1, 50, 3000]), ts) for ts in range(300)]
    # retention removed the oldest ones: positions and ids before them are refused as pruned
    assert store.prune_older(40, batch=1000) == 40
    ids = [int(e["id"]) for e in sent]
    requests = []
    for _ in range(400):
        reader = rnd.choice(readers + [BOB])
        topics = client_topics(reader.dept, reader.user)
        mode = rnd.choice(["after", "latest", "positions"])
        limit, max_bytes = rnd.choice([1, 3, 20, 100]), rnd.choice([DEFAULT_MAX_BYTES, 8000, 10])
        if mode == "positions":
            positions = {t: rnd.choice([0, 1, 5, 20, 40, 200, 10 ** 6]) for t in rnd.sample(topics, rnd.randint(1, 3))}
            requests.append(HistoryRequest(topics, positions=positions, limit=limit, max_bytes=max_bytes))
        else:
            after = rnd.choice([0, 0, ids[10], ids[100], ids[-5], ids[-1] + 10])
            requests.append(HistoryRequest(topics, after=after, limit=limit, latest=mode == "latest",
                                           max_bytes=max_bytes))
    alone = [history_or_pruned(store, request) for request in requests]
    together = store.history_many(requests)
    assert [("pruned", a.gone) if isinstance(a, PrunedHistory) else a for a in together] == alone
    assert sum(1 for a in alone if a and a[0] != "pruned") > 100  # most asked for something there
    assert sum(1 for a in alone if a and a[0] == "pruned") > 5
    # more ranges than one statement takes, and nothing at all
    many = [HistoryRequest(client_topics("hr", f"v{i}"), limit=2) for i in range(sql.ARMS_CHUNK + 10)]
    assert store.history_many(many) == [store.history(r) for r in many]
    assert store.history_many([]) == []
