"""Receipts and the roster in the store, on both implementations (SQLite, PostgreSQL): the
audience counted from the roster, counts disjoint, pages of who, and retention taking a
notice's receipts with it."""


from components.core import names
from components.core.history import format_id
from components.core.receipts import IMPORTED, SIGNED_IN, Notice
from components.core.targets import SCOPE_ALL, SCOPE_DEPT, SCOPE_USER, Target
from components.core.tokens import Identity

BOSS = Identity("boss", "hr", "publisher")
HR = Target(SCOPE_DEPT, "hr", dept="hr")
ALL = Target(SCOPE_ALL, "All")
TO_BOB = Target(SCOPE_USER, "hr_bob", dept="hr", user="bob")


def notice(store, target: Target, ts: int = 1000) -> Notice:
    envelope = store.append(target, BOSS, "drill", ts)
    [found] = store.notices([int(envelope["id"])])
    return found


def test_roster_counts_imported_and_signed_in_members_once_each(store):
    assert store.roster_import([("hr", "ann"), ("hr", "bob")], 5) == (2, 0)
    assert store.roster_import([("hr", "bob"), ("hr", "cy")], 6) == (1, 1)
    store.roster_touch([("hr", "bob", 10), ("hr", "dan", 11), ("it", "eve", 12)])
    store.roster_touch([("hr", "dan", 20)])
    rows = store.roster("hr")
    assert rows == [("ann", 5, None, IMPORTED), ("bob", 5, 10, IMPORTED), ("cy", 6, None, IMPORTED),
                    ("dan", 11, 20, SIGNED_IN)]
    assert store.roster_remove("hr", "cy") is True
    assert store.roster_remove("hr", "cy") is False
    assert [r[0] for r in store.roster("hr")] == ["ann", "bob", "dan"]
    store.roster_touch([("hr", "cy", 30)])            # removed, then signed in again: back
    assert store.roster("hr")[2] == ("cy", 30, 30, SIGNED_IN)


def test_counts_are_disjoint_and_only_the_audience_counts(store):
    store.roster_import([("hr", "ann"), ("hr", "bob"), ("hr", "cy"), ("hr", "boss"), ("it", "eve")], 1)
    n = notice(store, HR)
    assert store.receipt_counts(n) == (3, 0, 0)          # the sender is not in the audience
    store.add_receipts([(n.id, names.DELIVERED, "hr", "ann", 7), (n.id, names.SEEN, "hr", "ann", 8),
                        (n.id, names.DELIVERED, "hr", "bob", 9), (n.id, names.DELIVERED, "hr", "bob", 99),
                        (n.id, names.SEEN, "hr", "zed", 9)])  # zed is not on the roster
    assert store.receipt_counts(n) == (3, 1, 1)
    assert store.recipients(n, names.SEEN, None, 10) == [("hr", "ann", 8)]
    assert store.recipients(n, names.DELIVERED, None, 10) == [("hr", "bob", 9)]   # the first receipt sets at
    assert store.recipients(n, names.PENDING, None, 10) == [("hr", "cy", None)]
    everyone = notice(store, ALL)
    assert store.receipt_counts(everyone) == (4, 0, 0)
    direct = notice(store, TO_BOB)
    assert store.receipt_counts(direct) == (1, 0, 0)
    store.add_receipts([(direct.id, names.DELIVERED, "hr", "bob", 3)])
    assert store.receipt_counts(direct) == (1, 0, 1)
    assert store.recipients(direct, names.DELIVERED, None, 10) == [("hr", "bob", 3)]
    assert store.recipients(direct, names.PENDING, None, 10) == []


def test_pages_of_who_follow_the_cursor(store):
    store.roster_import([("hr", f"u{i:03d}") for i in range(25)], 1)
    n = notice(store, HR)
    pages, after = [], None
    while True:
        page = store.recipients(n, names.PENDING, after, 10)
        pages.append([u for _, u, _ in page])
        if len(page) < 10:
            break
        after = (page[-1][0], page[-1][1])
    assert [len(p) for p in pages] == [10, 10, 5]
    assert sum(pages, []) == [f"u{i:03d}" for i in range(25)]


def test_retention_removes_receipts_with_their_notice(store):
    store.roster_import([("hr", "ann")], 1)
    old, new = notice(store, HR, ts=1000), notice(store, HR, ts=5000)
    store.add_receipts([(old.id, names.SEEN, "hr", "ann", 1), (new.id, names.SEEN, "hr", "ann", 2)])
    assert store.prune_older(2000, 100) == 1
    assert store.notices([old.id]) == []
    assert store.recipients(new, names.SEEN, None, 10) == [("hr", "ann", 2)]
    # a receipt of a notice that is gone is not stored
    store.add_receipts([(old.id, names.DELIVERED, "hr", "ann", 3)])
    assert store.receipt_counts(old) == (1, 0, 0)
    assert format_id(new.id) > format_id(old.id)
