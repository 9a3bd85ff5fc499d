"""The file of ``deptcast roster import``: CSV rows ``dept,user`` (a header row ``dept,user``
is optional), each checked by the contract's name rules before anything is sent; the same
person twice counts once. Blank lines are skipped.
"""

import csv
import io
from typing import List, Tuple

from components.core import names

#: the longest file read
MAX_FILE_BYTES = 64 * 1024 * 1024
HEADER = ["dept", "user"]


def check_row(row: List[str]) -> Tuple[str, str]:
    """One row's ``(dept, user)``, checked.

    :raises ValueError: with what is wrong
    :rtype: tuple
    """
    cells = [c.strip() for c in row]
    if len(cells) != 2:
        raise ValueError(f"{len(cells)} columns; a row is dept,user")
    dept, user = cells
    if dept == names.ALL:
        raise ValueError("'All' is not a department (it means everyone)")
    if not names.is_name(dept):
        raise ValueError(f"{dept[:80]!r} is not a department code ({names.NAME_RULE})")
    if not names.is_name(user):
        raise ValueError(f"{user[:80]!r} is not a user id ({names.NAME_RULE})")
    return dept, user


def read_roster(text: str) -> Tuple[List[Tuple[str, str]], List[Tuple[int, str]]]:
    """The people of a roster file, in file order without repeats, and every bad line with
    what is wrong with it.

    :rtype: tuple
    """
    rows: List[Tuple[str, str]] = []
    seen = set()
    problems: List[Tuple[int, str]] = []
    reader = csv.reader(io.StringIO(text, newline=""))
    first = True
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            problems.append((reader.line_num, f"not CSV ({e})"))
            continue
        line = reader.line_num
        if not row or all(not c.strip() for c in row):
            continue
        if first and [c.strip().lower() for c in row] == HEADER:
            first = False
            continue
        first = False
        try:
            person = check_row(row)
        except ValueError as e:
            problems.append((line, str(e)))
            continue
        if person not in seen:
            seen.add(person)
            rows.append(person)
    return rows, problems
