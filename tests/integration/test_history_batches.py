"""History on a real node while many clients ask at once: the node reads concurrent calls
together (in batches), and every client still gets exactly what the store answers its call
alone, in every mode (``after``, ``latest``, ``positions``, pruned positions refused alike)."""

import random

import pytest_twisted
from twisted.internet import defer

from components.core.history import HistoryRequest, answer_cap
from components.core.messages import DEFAULT_MAX_MESSAGE_BYTES
from components.core.names import client_topics
from components.core.settings import SQLITE_FILE
from components.store import open_store
from tests.support.nodes import token
from tests.support.wamp import connect

DEPTS = ["hba", "hbb", "hbc"]


@pytest_twisted.inlineCallbacks
def test_concurrent_history_calls_get_exactly_what_the_store_answers_each(node):
    rnd = random.Random(7)
    boss = yield connect(node.url, token("boss", "hq", "publisher"))
    users = [(DEPTS[i % 3], f"r{i}") for i in range(24)]
    items = []
    for i in range(150):
        kind = rnd.random()
        to = ("All" if kind < 0.15 else f"{rnd.choice(users)[0]}_{rnd.choice(users)[1]}" if kind < 0.35
              else rnd.choice(DEPTS))
        items.append({"to": to, "message": f"m{i} " + "y" * rnd.choice([1, 40, 900])})
    results = yield boss.call("deptcast.send_batch", items)
    assert all("id" in r for r in results)
    readers = yield defer.gatherResults([connect(node.url, token(user, dept)) for dept, user in users])
    calls, asked = [], []
    for (dept, user), reader in zip(users, readers):
        topics = client_topics(dept, user)
        for _ in range(3):
            mode = rnd.choice(["after", "latest", "positions"])
            limit = rnd.choice([1, 5, 30, 100])
            if mode == "positions":
                positions = {t: rnd.choice([0, 3, 20, 10 ** 6]) for t in rnd.sample(topics, rnd.randint(1, 3))}
                asked.append(HistoryRequest(tuple(topics), positions=positions, limit=limit))
                calls.append(reader.call("deptcast.history", limit=limit, positions=positions))
            else:
                after = rnd.choice([None, results[10]["id"], results[120]["id"]])
                asked.append(HistoryRequest(tuple(topics), after=int(after or 0), limit=limit,
                                            latest=mode == "latest"))
                calls.append(reader.call("deptcast.history", after=after, limit=limit, latest=mode == "latest"))
    answers = yield defer.gatherResults(calls)
    store = open_store(str(node.node_dir / SQLITE_FILE))
    try:
        cap = answer_cap(DEFAULT_MAX_MESSAGE_BYTES)
        expected = [store.history(HistoryRequest(r.topics, r.after, r.positions, r.limit, r.latest, cap))
                    for r in asked]
    finally:
        store.close()
    assert answers == expected
    assert sum(1 for a in answers if a) > len(answers) // 2
    for c in readers + [boss]:
        yield c.close()
