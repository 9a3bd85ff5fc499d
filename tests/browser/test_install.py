"""A non-editable install serves the page: ``pip install .`` (a wheel, not a link to the
checkout) into a fresh virtual environment, then ``deptcast node-config`` and ``crossbar start``
from a directory outside the checkout, and the page works in chromium. The build reads the
package's metadata from ``setup.cfg`` and prints no deprecation warning; the installed metadata
is the package's.

The wheel is built and installed for real, without its dependencies: those come from the
checkout's ``.venv`` through a ``.pth`` line, because installing crossbar's ~100 packages again
takes about a minute even from pip's cache (measured: 59 s), and they are not what this test is
about. ``.pth`` files of that directory are not read (only a site directory's are), so the
checkout's editable-install hook stays out: ``components`` and ``deptcast_web`` can only come from
the new environment's own ``site-packages``, which the test checks.
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from playwright.sync_api import expect

from components.ops import process
from tests.support.nodes import REPO, TEST_SECRET, free_port, token

#: every file the page is made of, as the wheel must ship it
PAGE_FILES = {"__init__.py", "index.html", "style.css", "app.js", "catchup.js", "deptcast.js", "errors.js",
              "link.js", "presence.js", "receipts.js", "refresh.js", "sending.js", "signin.js", "timeline.js",
              "vendor/autobahn.js"}


def run(*args: str, **kwargs) -> str:
    kwargs.setdefault("stderr", subprocess.PIPE)
    done = subprocess.run(list(args), stdout=subprocess.PIPE, text=True, timeout=180, **kwargs)
    errors = done.stderr or ""
    assert done.returncode == 0, f"{args} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{errors[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh virtual environment with deptcast installed from a wheel of the checkout."""
    assert (REPO / "web" / "vendor" / "autobahn.js").is_file(), "build the bundle first: scripts/install"
    # the sources as a clone with the bundle built has them: what git tracks (or would), and the
    # bundle; a copy, because an in-tree build leaves build/ behind, which a later build reuses
    source = tmp_path_factory.mktemp("source")
    files = run("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=str(REPO)).split("\0")
    for rel in [f for f in files if f] + ["web/vendor/autobahn.js"]:
        if (REPO / rel).is_file():
            (source / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, source / rel)
    venv = tmp_path_factory.mktemp("venv")
    run(sys.executable, "-m", "venv", str(venv))
    python = str(venv / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # verbose: the build backend's own output (its warnings) shows only then
    output = run(python, "-m", "pip", "install", "--verbose", "--no-deps", str(source), env=env,
                 cwd=str(tmp_path_factory.mktemp("elsewhere")), stderr=subprocess.STDOUT)
    (venv / "pip-install.log").write_text(output)
    # the dependencies: this environment's site-packages, after the new one's own
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))").strip())
    (site / "deptcast-test-deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    # crossbar's command, as its package would install it (the `deptcast` one pip made)
    script = venv / "bin" / "crossbar"
    script.write_text(f"#!{python}\nimport sys\nfrom crossbar import run\nsys.exit(run())\n")
    script.chmod(0o755)
    return venv


def test_the_wheel_ships_every_subpackage_and_exactly_the_page(installed):
    site = Path(run(str(installed / "bin" / "python"), "-c",
                    "import sysconfig; print(sysconfig.get_path('purelib'))").strip())
    wanted = {p.parent.relative_to(REPO).as_posix() for p in (REPO / "components").rglob("__init__.py")}
    shipped = {p.parent.relative_to(site).as_posix() for p in (site / "components").rglob("__init__.py")}
    assert shipped == wanted  # a subpackage missing from setup.cfg's list fails here
    page = {p.relative_to(site / "deptcast_web").as_posix() for p in (site / "deptcast_web").rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}
    assert page == PAGE_FILES
    where = run(str(installed / "bin" / "python"), "-c",
                "import components, json; from components.edge.static import web_directory; "
                "print(json.dumps([components.__file__, str(web_directory())]))", cwd="/")
    assert json.loads(where) == [str(site / "components" / "__init__.py"), str(site / "deptcast_web")]


def test_the_build_reads_setup_cfg_without_deprecation_warnings(installed):
    log = (installed / "pip-install.log").read_text()
    assert "Successfully installed deptcast-" in log
    # setuptools says what it deprecates as SetuptoolsDeprecationWarning (pip 24+ as BuildBackendWarning)
    warned = [line for line in log.splitlines() if "Deprecat" in line or "BuildBackendWarning" in line]
    assert warned == [], "\n".join(warned)


def test_the_installed_metadata_is_the_packages(installed):
    """What setup.cfg declares, as the installed distribution reports it."""
    script = ("import json; from importlib.metadata import distribution as d; m = d('deptcast'); "
              "print(json.dumps({'meta': {k: m.metadata.get_all(k) for k in set(m.metadata.keys())}, "
              "'entry_points': [[e.group, e.name, e.value] for e in m.entry_points], "
              "'description': m.metadata.get_payload()}))")
    found = json.loads(run(str(installed / "bin" / "python"), "-c", script, cwd="/"))
    meta = {k: v[0] if len(v) == 1 else sorted(v) for k, v in found["meta"].items()}
    assert meta["Name"] == "deptcast" and meta["Version"] == "0.2.0"
    assert meta["License-Expression"] == "MIT" and meta["License-File"] == "LICENSE"
    assert meta["Requires-Python"] == ">=3.11"
    assert meta["Provides-Extra"] == ["bench", "docs", "test"]
    requires = meta["Requires-Dist"]
    for name in ("crossbar", "autobahn", "Twisted", "txaio", "PyJWT", "psycopg[binary]", "prometheus_client"):
        assert any(r.startswith(name) and "extra ==" not in r for r in requires), (name, requires)
    assert any(r.startswith("mkdocs-material") and 'extra == "docs"' in r for r in requires), requires
    assert any(r.startswith("pytest-twisted") and 'extra == "test"' in r for r in requires), requires
    assert found["entry_points"] == [["console_scripts", "deptcast", "components.ops.cli:main"]]
    # the long description is the README, as markdown
    assert meta["Description-Content-Type"] == "text/markdown"
    assert found["description"].strip() == (REPO / "README.md").read_text().strip()


def test_an_installed_node_serves_the_page_that_works(installed, tmp_path, monkeypatch, browser):
    node_dir = tmp_path / "node"
    node_dir.mkdir()
    port = free_port()
    run(str(installed / "bin" / "deptcast"), "node-config", "--port", str(port), "--output",
        str(node_dir / "config.json"), cwd=str(tmp_path))
    monkeypatch.setattr(process, "CROSSBAR", str(installed / "bin" / "crossbar"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPTCAST_") and k != "PYTHONPATH"}
    node = process.NodeProcess(node_dir, env={**env, "DEPTCAST_JWT_SECRET": TEST_SECRET}, name="installed")
    node.start()
    try:
        site = installed / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
        assert f"deptcast web: the page is served from {site / 'deptcast_web'}" in node.log_text()
        context = browser.new_context()
        try:
            page = context.new_page()
            answers = []
            page.on("response", lambda r: answers.append((r.url.split(str(port), 1)[1], r.status)))
            page.goto(f"http://127.0.0.1:{port}/#token=" + token("ian", "inst"))
            page.click("#confirm-yes")  # a token it did not ask for: the page asks first
            expect(page.locator("#conn")).to_have_attribute("data-state", "connected", timeout=30_000)
            expect(page.locator("#who")).to_have_text("ian · inst · member")
            assert ("/vendor/autobahn.js", 200) in answers and all(status == 200 for _, status in answers)
        finally:
            context.close()
    finally:
        node.stop()
