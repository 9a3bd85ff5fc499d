"""Safe retries and group commit in the store, against both implementations: SQLite (a temp
file) and PostgreSQL (a schema of its own, dropped afterwards). Two stores on one database
stand for two nodes of a cluster."""

import re
import threading
import time

import pytest

from components.core.history import HistoryRequest
from components.core.names import client_topics
from components.core.sendkeys import KEY_WINDOW_MS, Outgoing
from components.core.targets import SCOPE_DEPT, SCOPE_USER, Target
from components.core.tokens import Identity
from components.store import open_store, sql
from components.store.sql import DeadlinePassed
from tests.support.pg import pg_schema
from tests.support.stores import migrated_store

PAT = Identity("pat", "hr", "publisher")
PAT_OF_IT = Identity("pat", "it", "publisher")
BOB = Identity("bob", "hr", "member")
HR = Target(SCOPE_DEPT, "hr", dept="hr")
IT = Target(SCOPE_DEPT, "it", dept="it")
TO_BOB = Target(SCOPE_USER, "hr_bob", dept="hr", user="bob")


def stored_on(store, topic: str):
    return store.history(HistoryRequest((topic,), positions={topic: 0}, limit=10000, max_bytes=1 << 30))


def now_ms() -> int:
    return int(time.time() * 1000)


def test_the_same_key_answers_the_first_envelope_and_stores_nothing(store):
    [first] = store.append_many([Outgoing(HR, PAT, "drill at 3", now_ms(), "k1")])
    [again] = store.append_many([Outgoing(HR, PAT, "drill at 3", now_ms() + 5, "k1")])
    assert first.fresh and not again.fresh and again.envelope == first.envelope
    # another to or message with that key: a conflict; another sender's same key: its own notice
    [other_text] = store.append_many([Outgoing(HR, PAT, "drill at 4", now_ms(), "k1")])
    [other_to] = store.append_many([Outgoing(IT, PAT, "drill at 3", now_ms(), "k1")])
    [other_sender] = store.append_many([Outgoing(HR, PAT_OF_IT, "drill at 3", now_ms(), "k1")])
    assert other_text.conflict and other_to.conflict
    assert other_sender.fresh and other_sender.envelope["seq"] == 2
    assert [e["id"] for e in stored_on(store, HR.topic)] == [first.envelope["id"], other_sender.envelope["id"]]
    assert store.sent_keys(PAT, ["k1", "k2"]) == {"k1": (Outgoing(HR, PAT, "drill at 3", 0).fingerprint,
                                                         first.envelope)}


def test_a_group_commit_keeps_order_gapless_seq_and_tolerates_known_keys_per_item(store):
    [known] = store.append_many([Outgoing(HR, PAT, "known", now_ms(), "known")])
    ts = now_ms()
    items = [Outgoing(HR if i % 3 else TO_BOB, PAT, f"m{i}", ts, f"g{i}" if i % 2 else None) for i in range(1200)]
    items.insert(10, Outgoing(HR, PAT, "known", ts, "known"))        # stored before: answered, not stored
    items.insert(20, Outgoing(HR, PAT, "not the same", ts, "known"))  # a conflict: refused, batch goes on
    items.insert(30, Outgoing(HR, PAT, "m1", ts, "g1"))               # a repeat within the batch
    results = store.append_many(items)
    assert len(results) == len(items)
    assert results[10].envelope == known.envelope and not results[10].fresh
    assert results[20].conflict
    assert results[30].envelope == results[1].envelope and not results[30].fresh
    fresh = [r.envelope for r in results if r.fresh]
    assert len(fresh) == 1200
    assert [e["message"] for e in fresh] == [f"m{i}" for i in range(1200)]
    ids = [int(e["id"]) for e in fresh]
    assert ids == sorted(ids) and len(set(ids)) == 1200
    for topic, first_seq in ((HR.topic, 2), (TO_BOB.topic, 1)):
        rows = stored_on(store, topic)
        assert [e["seq"] for e in rows] == list(range(1, len(rows) + 1))
        assert [e["seq"] for e in fresh if e["target"] == rows[-1]["target"]][0] == first_seq


def test_a_write_past_its_deadline_is_rolled_back(store):
    with pytest.raises(DeadlinePassed):
        store.append_many([Outgoing(HR, PAT, "late", now_ms(), "late")], before_commit=lambda: False)
    assert stored_on(store, HR.topic) == [] and store.sent_keys(PAT, ["late"]) == {}
    [ok] = store.append_many([Outgoing(HR, PAT, "late", now_ms(), "late")], before_commit=lambda: True)
    assert ok.fresh and ok.envelope["seq"] == 1


def test_keys_outlive_retention_and_go_after_a_day(store, monkeypatch):
    old = now_ms() - KEY_WINDOW_MS - 60_000
    [first] = store.append_many([Outgoing(HR, PAT, "old", old, "old-key")])
    assert store.prune_older(now_ms(), 100) == 1  # retention removed the message itself
    assert store.sent_keys(PAT, ["old-key"])["old-key"][1] == first.envelope
    monkeypatch.setattr(sql, "KEYS_PRUNE_EVERY", 0.0)
    store.append_many([Outgoing(HR, PAT, "new", now_ms(), "new-key")])  # prunes keys older than a day
    assert set(store.sent_keys(PAT, ["old-key", "new-key"])) == {"new-key"}


def test_two_nodes_racing_with_one_key_store_it_once(db):
    """Two stores (two nodes) append the same keyed notices at once, many times: each key is
    stored once and both are answered the same envelope."""
    stores = [open_store(db) for _ in range(2)]
    stores[0].migrate()
    answers = {0: [], 1: []}
    errors = []
    lock = threading.Lock()  # SQLite: one connection per thread, but the file's lock serialises

    def node(n):
        try:
            for i in range(40):
                item = [Outgoing(HR, PAT, f"notice {i}", now_ms(), f"race-{i}")]
                if db.startswith("postgresql://"):
                    answers[n].append(stores[n].append_many(item)[0])
                else:
                    with lock:
                        answers[n].append(stores[n].append_many(item)[0])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=node, args=(n,)) for n in range(2)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        assert [a.envelope for a in answers[0]] == [a.envelope for a in answers[1]]
        assert all(a.fresh != b.fresh for a, b in zip(answers[0], answers[1]))
        rows = stored_on(stores[0], HR.topic)
        assert [e["message"] for e in rows] == [f"notice {i}" for i in range(40)]
        assert [e["seq"] for e in rows] == list(range(1, 41))
    finally:
        for s in stores:
            s.close()


def test_the_reader_sees_what_a_group_stored(store):
    items = [Outgoing(TO_BOB, PAT, f"dm{i}", now_ms(), f"dm{i}") for i in range(5)]
    store.append_many(items)
    seen = store.history(HistoryRequest(client_topics(BOB.dept, BOB.user), 0, None, 100, False, 1 << 20))
    assert [e["message"] for e in seen] == [f"dm{i}" for i in range(5)]


def test_a_postgresql_group_commit_takes_five_round_trips_whatever_its_topics(tmp_path):
    """BEGIN; the append lock with the keys lookup; every topic's seq; the inserts; the keys'
    rows with the COMMIT: counted in libpq's protocol trace as the client's messages that wait
    for the server's answers (a simple Query, a Flush or a Sync)."""
    with pg_schema("deptcast_trips") as url, migrated_store(url) as store:
        conn = store._conn()
        trace = tmp_path / "trace"
        with open(trace, "w") as out:
            conn.pgconn.trace(out.fileno())
            ts = now_ms()
            users = [Target(SCOPE_USER, f"hr_u{n}", dept="hr", user=f"u{n}") for n in range(5)]
            items = [Outgoing(target, PAT, f"m{n}", ts, f"k{n}")
                     for n in range(40) for target in [users[n % 5]]] + [Outgoing(HR, PAT, "all", ts, "k-hr")]
            stored = store.append_many(items)
            conn.pgconn.untrace()
        assert [s.fresh for s in stored] == [True] * 41
        assert [s.envelope["seq"] for s in stored[:10]] == [1] * 5 + [2] * 5
        sent = [line.split("\t")[3] for line in trace.read_text().splitlines() if line.split("\t")[1:2] == ["F"]]
        # (psycopg flushes once more after the pipeline's Sync: the same round trip)
        waits = [m for m in sent if m in ("Query", "Flush", "Sync")]
        assert waits[:5] == ["Query", "Flush", "Flush", "Flush", "Sync"] and "Sync" not in waits[5:]


def test_postgresql_groups_of_any_size_insert_with_one_statement_text(tmp_path):
    """A group's messages and keys go in by one statement each, of the same text whatever the
    group's size (so psycopg converts it once and the server can keep it prepared)."""
    with pg_schema("deptcast_unnest") as url, migrated_store(url) as store:
        conn = store._conn()
        trace = tmp_path / "trace"
        with open(trace, "w") as out:
            conn.pgconn.trace(out.fileno())
            for size in (1, 7, 600):  # 600: more than one multi-row VALUES chunk held
                ts = now_ms()
                stored = store.append_many([Outgoing(HR, PAT, f"{size}-{n}", ts, f"k{size}-{n}")
                                            for n in range(size)])
                assert all(s.fresh for s in stored)
            conn.pgconn.untrace()
        # a Parse message: the statement's name, then its text (neither holds a double quote)
        parsed = [re.search(r'"[^"]*" "([^"]*)"', line.split("\t")[4]).group(1)
                  for line in trace.read_text().splitlines() if line.split("\t")[1:4:2] == ["F", "Parse"]]
        messages = {text for text in parsed if "INSERT INTO messages" in text}
        keys = {text for text in parsed if "INSERT INTO send_keys" in text}
        assert len(messages) == 1 and len(keys) == 1
        assert sum("INSERT INTO messages" in text for text in parsed) == 3  # one per group
        assert [e["seq"] for e in stored_on(store, "deptcast.dept.hr")] == list(range(1, 609))


def test_any_text_goes_in_and_comes_back_as_it_was_sent(store):
    # (PostgreSQL takes a group's rows as one JSON document: quotes, backslashes, escapes, line
    # breaks, characters outside the BMP and JSON look-alikes must come back unchanged)
    texts = ['say "hi"', "back\\slash \\u0041 \\n", "line\nbreak\ttab", "caf\u00e9 \u65e5\u672c \U0001F600",
             '{"to": "All", "message": [1, 2]}', "null", "", "\u2028\u2029"]
    ts = now_ms()
    results = store.append_many([Outgoing(TO_BOB if n % 2 else HR, PAT, text, ts + n, f"t{n}")
                                 for n, text in enumerate(texts)])
    assert [r.envelope["message"] for r in results] == texts
    assert [r.envelope["ts"] for r in results] == [ts + n for n in range(len(texts))]
    back = {e["id"]: e for e in stored_on(store, HR.topic) + stored_on(store, TO_BOB.topic)}
    assert [back[r.envelope["id"]] for r in results] == [r.envelope for r in results]
    # a retry is answered the stored envelope, exactly
    again = store.append_many([Outgoing(TO_BOB if n % 2 else HR, PAT, text, ts, f"t{n}")
                               for n, text in enumerate(texts)])
    assert [r.envelope for r in again] == [r.envelope for r in results] and not any(r.fresh for r in again)


def test_postgresql_plans_a_prepared_statement_for_its_parameters():
    # (the generic plans of a group commit's repeated statements cost the server about six
    # times the CPU: bench/send_ceiling.py, and the comment in connection_params)
    with pg_schema("deptcast_plans") as url, migrated_store(url) as store:
        for size in (100, 100, 100, 100, 100, 100, 100):  # prepared after five
            ts = now_ms()
            store.append_many([Outgoing(HR, PAT, f"m{n}", ts, f"p{ts}-{n}") for n in range(size)])
        assert store._conn().execute("SHOW plan_cache_mode").fetchone()[0] == "force_custom_plan"
