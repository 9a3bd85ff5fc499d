"""Every suppression in the tree says why: a ``# noqa`` names its codes and gives a reason in
parentheses after them, ``# noqa: E731 (a new value per call)``; a ``# type: ignore`` names its
error codes and gives a reason in a comment after them,
``# type: ignore[override]  # Autobahn waits on a Deferred`` (mypy reads nothing else after the
codes). ruff and mypy report a suppression that no longer suppresses anything (RUF100,
``warn_unused_ignores``); this test holds the reasons (docs/project/testing.md)."""

import io
import os
import re
import tokenize
from pathlib import Path
from typing import List, Tuple

REPO = Path(__file__).resolve().parents[2]
#: the folders of the tree's Python (not .venv, web/node_modules or anything generated)
FOLDERS = ("components", "tests", "bench", "scripts", "web", "docs")

NOQA = re.compile(r"#\s*noqa\b", re.IGNORECASE)
NOQA_EXPLAINED = re.compile(r"#\s*noqa:\s*[A-Z]+[0-9]+(\s*,\s*[A-Z]+[0-9]+)*\s+\([^)]*\w[^)]*\)")
TYPE_IGNORE = re.compile(r"#\s*type:\s*ignore\b")
TYPE_IGNORE_EXPLAINED = re.compile(r"#\s*type:\s*ignore\[[a-z-]+(\s*,\s*[a-z-]+)*\]\s+#\s*\w")


def unexplained(source: str) -> List[int]:
    """The lines of ``source`` whose ``noqa`` or ``type: ignore`` comment gives no codes or no
    reason.

    :rtype: list
    """
    lines = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type != tokenize.COMMENT:
            continue
        text = token.string
        if ((NOQA.search(text) and not NOQA_EXPLAINED.search(text))
                or (TYPE_IGNORE.search(text) and not TYPE_IGNORE_EXPLAINED.search(text))):
            lines.append(token.start[0])
    return lines


def python_files() -> List[Path]:
    files = []
    for folder in FOLDERS:
        for top, dirs, names in os.walk(REPO / folder):
            dirs[:] = [d for d in dirs if d not in ("node_modules", "__pycache__")]
            files += [Path(top) / name for name in names if name.endswith(".py")]
    return sorted(files)


def test_a_suppression_without_codes_or_a_reason_is_found():
    assert unexplained("x = 1  # noqa\n") == [1]
    assert unexplained("x = 1  # noqa: E731\n") == [1]
    assert unexplained("x = 1  # noqa: E731 ()\n") == [1]
    assert unexplained("x = 1  # type: ignore\n") == [1]
    assert unexplained("x = 1  # type: ignore[misc]\n") == [1]
    assert unexplained("x = 1  # type: ignore  # why\n") == [1]
    assert unexplained("x = 1\ny = 2  # NOQA:F401\n") == [2]


def test_a_suppression_with_codes_and_a_reason_passes():
    assert unexplained("f = lambda: 1  # noqa: E731 (a one-line helper)\n") == []
    assert unexplained("import a  # noqa: E402, F401 (after the framework's choice)\n") == []
    assert unexplained("x = 1  # type: ignore[attr-defined]  # a mixin: the Session's\n") == []
    assert unexplained("x = 1  # type: ignore[misc, override]  # why\n") == []
    # the words in a string or a docstring are not comments
    assert unexplained('s = "# noqa"\n"""# type: ignore"""\n') == []


def test_every_suppression_in_the_tree_says_why():
    found: List[Tuple[str, int]] = []
    for path in python_files():
        found += [(path.relative_to(REPO).as_posix(), line) for line in unexplained(path.read_text())]
    assert found == []
