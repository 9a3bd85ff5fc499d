"""Unit tests of :mod:`components.wamp.root`, the node's composition root: it is the one place
in ``components/`` that installs the upstream patches, it wires them with the node's
collaborators, and it hands over the node's message service through the runtime's
``messages`` slot."""

import ast
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest
from autobahn.wamp.types import CloseDetails
from twisted.internet import task
from twisted.trial.unittest import SynchronousTestCase

from components import upstream
from components.core.frames import frame_cap, wamp_message_cap
from components.service.runtime import Runtime
from components.wamp import auth, root
from components.wamp.root import RootComponent
from tests.support.fakes import make_settings
from tests.support.nodes import REPO

#: the modules allowed to install upstream patches: the node's composition root (a second and
#: last would be the install point of Crossbar proxy workers, should /ws move into them)
INSTALL_POINTS = ("components.wamp.root",)
#: the seam's installing functions: the registry's ``install``, and each patch's ``apply``
INSTALLERS: Set[str] = {"install"} | {patch.apply.__name__ for patch in upstream.PATCHES.values()}


def install_calls(path: Path, module: str) -> List[Tuple[int, str]]:
    """The calls in ``path`` of an installing function of :mod:`components.upstream`, as
    ``(line, name)``: by a name imported from the seam, through a seam module, or (inside the
    seam) by the name it is defined with."""
    tree = ast.parse(path.read_text(), str(path))
    seam: Dict[str, str] = {}  # local name -> what it is in the seam
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("components"):
            for alias in node.names:
                target = f"{node.module}.{alias.name}"
                if target.startswith("components.upstream"):
                    seam[alias.asname or alias.name] = target
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("components.upstream"):
                    seam[alias.asname or alias.name.split(".")[0]] = alias.name
    if module.startswith("components.upstream"):
        seam.update({node.name: f"{module}.{node.name}" for node in ast.walk(tree)
                     if isinstance(node, ast.FunctionDef)})
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in seam and seam[func.id].rsplit(".", 1)[-1] in INSTALLERS:
            found.append((node.lineno, func.id))
        elif isinstance(func, ast.Attribute) and func.attr in INSTALLERS:
            owner = ast.unparse(func.value)
            if owner.split(".")[0] in seam:
                found.append((node.lineno, f"{owner}.{func.attr}"))
    return found


def installs_outside_the_root(root_dir: Path) -> List[Tuple[str, int, str]]:
    """Every call of a seam's installing function in ``root_dir/components`` outside the
    install points (the registry, which defines ``install``, calls each patch's ``apply``
    through the patch: not a call by name).

    :rtype: list
    """
    found = []
    for path in sorted((root_dir / "components").rglob("*.py")):
        module = ".".join(path.relative_to(root_dir).with_suffix("").parts)
        if module in INSTALL_POINTS:
            continue
        found += [(module, line, name) for line, name in install_calls(path, module)]
    return found


def test_only_the_composition_root_installs_upstream_patches():
    assert installs_outside_the_root(REPO) == []
    assert [name for _, name in install_calls(REPO / "components" / "wamp" / "root.py", "components.wamp.root")] \
        == ["upstream.install"]


@pytest.mark.parametrize("module, source", [
    ("edge/bad.py", "from components import upstream\nupstream.install(upstream.Wiring())\n"),
    ("edge/bad.py", "from components.upstream import install\ndef f():\n    install(None)\n"),
    ("wamp/bad.py", "from components.upstream.registry import install as go\ngo(None)\n"),
    ("wamp/bad.py", "import components.upstream\ncomponents.upstream.install(None)\n"),
    ("edge/bad.py", "from components.upstream import rlinks\nrlinks._repair(None)\n"),
    ("upstream/bad.py", "def _repair(w):\n    pass\n_repair(None)\n"),
])
def test_the_scan_notices_an_install_anywhere_else(tmp_path, module, source):
    (tmp_path / "components" / Path(module).parent).mkdir(parents=True)
    (tmp_path / "components" / module).write_text(source)
    (tmp_path / "components" / "wamp").mkdir(exist_ok=True)
    (tmp_path / "components" / "wamp" / "root.py").write_text("from components import upstream\n"
                                                               "upstream.install(None)\n")
    [(found, _, _)] = installs_outside_the_root(tmp_path)
    assert found == "components." + module[:-3].replace("/", ".")


def test_the_patches_are_wired_with_the_nodes_collaborators(monkeypatch):
    rt = Runtime(clock=task.Clock())
    monkeypatch.setattr(root, "runtime", lambda: rt)
    seen = []
    monkeypatch.setattr(upstream, "install", lambda wiring, leave_out=(): seen.append((wiring, leave_out)) or [])
    router = object()
    root.install_patches(router, make_settings(peers=["n2", "n3"], max_message_bytes=1000), ["hotpath.tcp_write"])
    [(wiring, leave_out)] = seen
    assert (wiring.router, wiring.authorize, wiring.links, wiring.peers) == (router, auth.authorize, rt.links,
                                                                               ("n2", "n3"))
    # a batch's body is bounded as one WAMP call
    assert wiring.max_body == wamp_message_cap(1000) > frame_cap(1000) and leave_out == ["hotpath.tcp_write"]


class RootLeaveTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.runtime = Runtime(clock=task.Clock())
        self.patch(root, "runtime", lambda: self.runtime)
        self.successor = object()

    def test_a_leaving_root_clears_its_own_service_only(self):
        old = RootComponent()
        old._messages = object()
        self.runtime.messages.set(old._messages)
        old.onLeave(CloseDetails(reason="wamp.close.normal"))
        self.assertIsNone(self.runtime.messages.value)
        self.runtime.messages.set(self.successor)
        old.onLeave(CloseDetails(reason="wamp.close.normal"))
        self.assertIs(self.runtime.messages.value, self.successor)

    def test_a_root_that_never_started_does_not_clear_a_running_service(self):
        self.runtime.messages.set(self.successor)
        RootComponent().onLeave(CloseDetails(reason="wamp.close.normal"))
        self.assertIs(self.runtime.messages.value, self.successor)


def test_a_notice_is_published_unacknowledged_and_answered_at_once():
    """The root session is attached in-process: when publish() returns, the broker has handed
    the event out; no PUBLISHED answer (and its Deferred) per notice."""
    component = RootComponent()
    published = []
    component.publish = lambda topic, *args, **kwargs: published.append((topic, args, kwargs))
    d = component._publish("deptcast.dept.hr", {"id": "1"})
    assert published == [("deptcast.dept.hr", ({"id": "1"},), {})]
    assert d.called and d.result is None


def test_a_publish_that_fails_fails_the_call():
    component = RootComponent()

    def fail(*args, **kwargs):
        raise RuntimeError("the session is gone")
    component.publish = fail
    with pytest.raises(RuntimeError):
        component._publish("deptcast.dept.hr", {"id": "1"})
