"""The package's layers and the one direction its imports may point:
``core`` <- ``store`` <- ``service`` <- ``wamp`` / ``edge`` / ``client`` <- ``ops``.

Every import of every module under ``components/`` is read with :mod:`ast` (imports inside
functions too); a module may import its own subpackage and the layers below it, nothing
else. ``core`` holds the rules as plain functions: no Twisted, Autobahn, txaio or Crossbar.
Within a subpackage too, no modules import each other round a circle. An import inside a
function says why it is not at the top of its module, in a comment on it or on the line
above it (a run of such imports shares one comment).
"""

import ast
import io
import tokenize
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest

from tests.support.nodes import REPO

#: each subpackage of ``components`` and its height; a module imports only lower ones (or its own)
LAYERS: Dict[str, int] = {"core": 0, "store": 1, "upstream": 1, "service": 2, "wamp": 3, "edge": 3, "client": 3,
                          "ops": 4}
#: third-party frameworks the pure rules must not touch
CORE_FORBIDDEN = ("twisted", "autobahn", "txaio", "crossbar", "zope")


#: imports inside functions not explained in place yet, in modules kept by others, with what is
#: known of why: explain them in place and drop them from here (an entry that no longer matches
#: fails the test, so the list only shrinks)
NOT_EXPLAINED_IN_PLACE: Dict[Tuple[str, str], str] = {}


def _from_base(node: ast.ImportFrom, package: str) -> str:
    """The module a ``from ... import`` names (a relative one resolved against ``package``)."""
    if node.level:
        base = package.split(".")[: len(package.split(".")) - node.level + 1]
        return ".".join(base + ([node.module] if node.module else []))
    return node.module or ""


def imports_of(path: Path, package: str) -> List[str]:
    """The absolute module names ``path`` imports (relative imports resolved against ``package``).

    :rtype: list
    """
    tree = ast.parse(path.read_text(), str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                names.append(_from_base(node, package))
            else:
                names.append(node.module or "")
                # `from components import core` imports the subpackage `components.core`
                if node.module == "components":
                    names += [f"components.{alias.name}" for alias in node.names]
    return names


def violations(root: Path) -> List[Tuple[str, str, str]]:
    """Every import under ``root/components`` that breaks the layering, as
    ``(module, imported, why)``.

    :rtype: list
    """
    found = []
    for path in sorted((root / "components").rglob("*.py")):
        rel = path.relative_to(root).with_suffix("")
        module = ".".join(rel.parts)
        parts = rel.parts
        if len(parts) < 3:
            if parts[-1] != "__init__":
                found.append((module, "", "a module at the top of components/ belongs to no layer"))
            continue
        layer = parts[1]
        if layer not in LAYERS:
            found.append((module, "", f"{layer!r} is not a layer"))
            continue
        package = ".".join(parts[:-1]) if parts[-1] != "__init__" else ".".join(parts[:-1])
        for name in imports_of(path, package):
            top = name.split(".")
            if layer == "core" and top[0] in CORE_FORBIDDEN:
                found.append((module, name, "core imports a framework"))
            if top[0] != "components" or len(top) < 2:
                continue
            target = top[1]
            if target == layer:
                continue
            if target not in LAYERS:
                found.append((module, name, f"{target!r} is not a layer"))
            elif LAYERS[target] >= LAYERS[layer]:
                found.append((module, name, f"{layer} (height {LAYERS[layer]}) may not import "
                                            f"{target} (height {LAYERS[target]})"))
    return found


def modules(root: Path) -> Dict[str, Path]:
    """Every module under ``root/components`` by its name (a package by its own name).

    :rtype: dict
    """
    out = {}
    for path in sorted((root / "components").rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def import_graph(root: Path) -> Dict[str, Set[str]]:
    """Which modules of ``components`` each one imports, imports inside functions included
    (``from package import name`` imports the module ``package.name`` when there is one).

    :rtype: dict
    """
    found = modules(root)
    graph: Dict[str, Set[str]] = {}
    for name, path in found.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: Set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = _from_base(node, package)
                targets.update(f"{base}.{a.name}" if f"{base}.{a.name}" in found else base for a in node.names)
        graph[name] = {t for t in targets if t in found and t != name}
    return graph


def import_circles(root: Path) -> List[List[str]]:
    """Every group of modules that import one another round a circle (the strongly connected
    components of :func:`import_graph` with more than one module), each sorted.

    :rtype: list
    """
    graph = import_graph(root)
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    circles: List[List[str]] = []

    def visit(module: str) -> None:  # Tarjan's algorithm
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in sorted(graph[module]):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                circles.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return sorted(circles)


def deferred_imports(root: Path) -> List[Tuple[str, int, str, bool]]:
    """Every import inside a function under ``root/components``: ``(module, line, what it
    imports, whether a comment says why)``. A comment counts on the import's own lines or on
    the line above it; an import right below an explained one shares its comment.

    :rtype: list
    """
    out = []
    for name, path in modules(root).items():
        source = path.read_text()
        comments = {token.start[0] for token in tokenize.generate_tokens(io.StringIO(source).readline)
                    if token.type == tokenize.COMMENT}
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]

        def visit(body: List[ast.stmt], in_function: bool) -> None:
            previous, previous_explained = None, False
            for statement in body:
                if in_function and isinstance(statement, (ast.Import, ast.ImportFrom)):
                    explained = (any(line in comments for line in range(statement.lineno - 1,  # noqa: B023 (visit runs within this iteration)
                                                                        statement.end_lineno + 1))
                                 or (previous_explained and previous.end_lineno == statement.lineno - 1))
                    what = (_from_base(statement, package) if isinstance(statement, ast.ImportFrom)  # noqa: B023 (visit runs within this iteration)
                            else ", ".join(alias.name for alias in statement.names))
                    out.append((name, statement.lineno, what, explained))  # noqa: B023 (visit runs within this iteration)
                    previous, previous_explained = statement, explained
                else:
                    previous, previous_explained = None, False
                inside = in_function or isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef))
                for field in ("body", "orelse", "finalbody"):
                    nested = getattr(statement, field, None)
                    if isinstance(nested, list):
                        visit(nested, inside)
                for handler in getattr(statement, "handlers", []):
                    visit(handler.body, inside)

        visit(ast.parse(source, str(path)).body, False)
    return out


def test_every_import_points_down_the_layers():
    assert violations(REPO) == []


def test_every_layer_exists():
    for layer in LAYERS:
        assert (REPO / "components" / layer / "__init__.py").exists(), layer


def _tree(tmp_path: Path, files: Dict[str, str]) -> Path:
    for layer in LAYERS:
        (tmp_path / "components" / layer).mkdir(parents=True)
        (tmp_path / "components" / layer / "__init__.py").write_text("")
    (tmp_path / "components" / "__init__.py").write_text("")
    for module, source in files.items():
        (tmp_path / "components" / module).write_text(source)
    return tmp_path


@pytest.mark.parametrize("module, source, why", [
    ("core/bad.py", "from twisted.internet import defer\n", "core imports a framework"),
    ("core/bad.py", "import components.store\n", "core (height 0) may not import store (height 1)"),
    ("wamp/bad.py", "def f():\n    from components.edge import legacy\n", "wamp (height 3) may not import edge"),
    ("store/bad.py", "from components import ops\n", "store (height 1) may not import ops (height 4)"),
    ("upstream/bad.py", "from components.service import links\n", "upstream (height 1) may not import service"),
    ("loose.py", "x = 1\n", "belongs to no layer"),
])
def test_the_check_notices_an_import_that_breaks_the_rule(tmp_path, module, source, why):
    [(_, _, found)] = violations(_tree(tmp_path, {module: source}))
    assert why in found


def test_no_modules_import_each_other_round_a_circle():
    assert import_circles(REPO) == []


@pytest.mark.parametrize("files, circles", [
    ({"store/a.py": "from components.store import b\n",
      "store/b.py": "def f():\n    from components.store.a import x  # (why)\n"},
     [["components.store.a", "components.store.b"]]),
    ({"ops/a.py": "from . import b\n", "ops/b.py": "from .c import y\n", "ops/c.py": "import components.ops.a\n"},
     [["components.ops.a", "components.ops.b", "components.ops.c"]]),
    ({"ops/a.py": "from . import b\n", "ops/b.py": "from .c import y\n", "ops/c.py": "import components.core\n"}, []),
])
def test_the_check_notices_a_circle_inside_functions_too(tmp_path, files, circles):
    assert import_circles(_tree(tmp_path, files)) == circles


def test_every_import_inside_a_function_says_why():
    unexplained = {(module, what): line for module, line, what, explained in deferred_imports(REPO) if not explained}
    missing = sorted(f"{module}:{line} imports {what}" for (module, what), line in unexplained.items()
                     if (module, what) not in NOT_EXPLAINED_IN_PLACE)
    assert missing == [], "say why in a comment on the import, or on the line above it"
    stale = sorted(f"{module} {what}" for module, what in NOT_EXPLAINED_IN_PLACE if (module, what) not in unexplained)
    assert stale == [], "explained in place (or gone): drop these from NOT_EXPLAINED_IN_PLACE"


def test_the_check_notices_an_import_inside_a_function_without_a_reason(tmp_path):
    source = """import json  # (the top of a module needs no reason)


def quiet():
    from twisted.internet import reactor
    return reactor


def beside():
    import txaio  # the framework is chosen by the caller
    return txaio


def above():
    # psycopg is optional
    import psycopg
    from psycopg import sql
    return psycopg, sql


def later():
    x = 1
    from twisted.internet import defer
    if x:
        import twisted.logger
    return defer
"""
    found = deferred_imports(_tree(tmp_path, {"store/s.py": source}))
    assert [(line, what, explained) for _, line, what, explained in found] == [
        (5, "twisted.internet", False), (10, "txaio", True), (16, "psycopg", True), (17, "psycopg", True),
        (23, "twisted.internet", False), (25, "twisted.logger", False)]
