"""The package's layers and the one direction its imports may point:
``core`` <- ``store`` <- ``service`` <- ``wamp`` / ``edge`` / ``client`` <- ``ops``.

Every import of every module under ``components/`` is read with :mod:`ast` (imports inside
functions too); a module may import its own subpackage and the layers below it, nothing
else. ``core`` holds the rules as plain functions: no Twisted, Autobahn, txaio or Crossbar.
"""

import ast
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from tests.support.nodes import REPO

#: each subpackage of ``components`` and its height; a module imports only lower ones (or its own)
LAYERS: Dict[str, int] = {"core": 0, "store": 1, "upstream": 1, "service": 2, "wamp": 3, "edge": 3, "client": 3,
                          "ops": 4}
#: third-party frameworks the pure rules must not touch
CORE_FORBIDDEN = ("twisted", "autobahn", "txaio", "crossbar", "zope")


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
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                names.append(".".join(base + ([node.module] if node.module else [])))
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


def test_every_import_points_down_the_layers():
    assert violations(REPO) == []


def test_every_layer_exists():
    for layer in LAYERS:
        assert (REPO / "components" / layer / "__init__.py").exists(), layer


@pytest.mark.parametrize("module, source, why", [
    ("core/bad.py", "from twisted.internet import defer\n", "core imports a framework"),
    ("core/bad.py", "import components.store\n", "core (height 0) may not import store (height 1)"),
    ("wamp/bad.py", "def f():\n    from components.edge import legacy\n", "wamp (height 3) may not import edge"),
    ("store/bad.py", "from components import ops\n", "store (height 1) may not import ops (height 4)"),
    ("upstream/bad.py", "from components.service import links\n", "upstream (height 1) may not import service"),
    ("loose.py", "x = 1\n", "belongs to no layer"),
])
def test_the_check_notices_an_import_that_breaks_the_rule(tmp_path, module, source, why):
    for layer in LAYERS:
        (tmp_path / "components" / layer).mkdir(parents=True)
        (tmp_path / "components" / layer / "__init__.py").write_text("")
    (tmp_path / "components" / "__init__.py").write_text("")
    (tmp_path / "components" / module).write_text(source)
    [(_, _, found)] = violations(tmp_path)
    assert why in found
