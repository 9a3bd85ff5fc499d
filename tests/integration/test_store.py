"""One store test suite, run against both implementations: SQLite (a temp file) and
PostgreSQL (a schema of its own on the machine's server, dropped afterwards)."""

import threading

import pytest

from components.core.targets import SCOPE_ALL, SCOPE_DEPT, SCOPE_USER, Target
from components.core.history import ID_WIDTH
from components.store import open_store
from components.store import postgres as pg_module
from components.store import sql
from components.store import sqlite as sqlite_module
from components.core.tokens import Identity
from tests.support.pg import pg_schema

ALICE = Identity("alice", "hr", "member")
BOB = Identity("bob", "hr", "member")
CAROL = Identity("carol", "it", "member")
BOSS = Identity("boss", "mgmt", "publisher")

HR = Target(SCOPE_DEPT, "hr", dept="hr")
IT = Target(SCOPE_DEPT, "it", dept="it")
ALL = Target(SCOPE_ALL, "All")
TO_BOB = Target(SCOPE_USER, "hr_bob", dept="hr", user="bob")
TO_CAROL = Target(SCOPE_USER, "it_carol", dept="it", user="carol")


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path):
    """A database location (file path or URL) that no other test uses."""
    if request.param == "sqlite":
        yield str(tmp_path / "store.sqlite3")
    else:
        with pg_schema("deptcast_store") as url:
            yield url


@pytest.fixture
def store(db):
    s = open_store(db)
    s.migrate()
    yield s
    s.close()


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
                    ("deptcast.all", 1), ("deptcast.dept.hr", 3), ("deptcast.user.bob", 1),
                    ("deptcast.all", 2), ("deptcast.user.bob", 2), ("deptcast.user.carol", 1)]
    # history carries the same numbers
    assert [(e["target"], e["seq"]) for e in store.history(BOB, 0, 100)] == [
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
        [old] = s.history(BOB, 0, 10)
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
    seen = lambda reader: [e["message"] for e in store.history(reader, 0, 100)]  # noqa: E731
    assert seen(ALICE) == ["to hr", "to all"]
    assert seen(BOB) == ["to hr", "to all", "to bob"]
    assert seen(CAROL) == ["to it", "to all", "to carol"]
    assert seen(BOSS) == ["to all"]
    # history returns exactly the envelopes that append returned
    assert store.history(BOB, 0, 100) == [sent["hr"], sent["all"], sent["bob"]]


def test_history_after_and_limit(store):
    envs = [store.append(HR, ALICE, f"m{i}", i) for i in range(10)]
    assert store.history(BOB, 0, 3) == envs[:3]
    assert store.history(BOB, int(envs[2]["id"]), 3) == envs[3:6]
    assert store.history(BOB, int(envs[-1]["id"]), 100) == []
    assert store.history(BOB, 0, 100) == envs


def test_history_latest_gives_the_newest_oldest_first(store):
    envs = [store.append(HR, ALICE, f"m{i}", i) for i in range(10)]
    store.append(IT, CAROL, "not for bob", 10)
    assert store.history(BOB, 0, 3, latest=True) == envs[7:]
    assert store.history(BOB, int(envs[5]["id"]), 100, latest=True) == envs[6:]
    assert store.history(BOB, int(envs[-1]["id"]), 3, latest=True) == []


def test_messages_persist_across_reopen(db):
    s = open_store(db)
    s.migrate()
    env = s.append(ALL, BOSS, "kept", 42)
    s.close()
    s = open_store(db)
    try:
        assert s.migrate() == len(migrations_of(db))
        assert s.history(CAROL, 0, 10) == [env]
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
        history = s.history(BOB, 0, 1000)
        assert sorted(ids) == [e["id"] for e in history]
        # one topic: seq 1..100 without gaps, in the order of the ids
        assert [e["seq"] for e in history] == list(range(1, 101))
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
            assert stores[1].history(BOB, 0, 10) == [env]
            # several nodes sending to one topic share its counter
            assert [st.append(HR, ALICE, "more", 2)["seq"] for st in stores] == [2, 3, 4, 5]
        finally:
            for s in stores:
                s.close()
