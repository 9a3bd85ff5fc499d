"""The docs site is built strictly (``scripts/test`` builds it before pytest): these tests show
that the build's checks are on, on a copy of the docs with one fault each; and the README's
links lead somewhere."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.nodes import REPO

#: the README's length the docs' design promises (a short README, then the docs)
README_MAX_LINES = 200


@pytest.fixture
def site(tmp_path) -> Path:
    """A copy of what the site is built from."""
    for name in ("mkdocs.yml", "README.md"):
        shutil.copy2(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "docs", tmp_path / "docs")
    return tmp_path


def build(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(root / "site")],
                          cwd=root, env=env, capture_output=True, text=True, timeout=120)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} is not in {path}"
    path.write_text(text.replace(old, new, 1))


def test_the_copy_builds(site):
    done = build(site)
    assert done.returncode == 0, done.stderr
    assert (site / "site" / "grafana-deptcast.json").is_file() and (site / "site" / "screenshot.png").is_file()
    # the README's examples are on the Python client's page, through the snippets
    assert "Twisted: the same with a callback" in (site / "site" / "using" / "python-client" / "index.html").read_text()


def test_a_broken_link_or_anchor_and_a_page_left_out_of_the_nav_fail_the_build(site):
    edit(site / "docs/operating/systemd.md", "(rolling-restart.md#graceful-drain)", "(rolling-restart.md#drain)")
    edit(site / "docs/operating/systemd.md", "(health-and-metrics.md#metrics)", "(metrics.md)")
    edit(site / "mkdocs.yml", "      - Retention: operating/retention.md\n", "")
    done = build(site)
    assert done.returncode != 0
    assert "does not contain an anchor '#drain'" in done.stderr
    assert "contains a link 'metrics.md', but the target 'operating/metrics.md' is not found" in done.stderr
    assert "operating/retention.md" in done.stderr and "not included in the \"nav\"" in done.stderr


def test_a_missing_snippet_fails_the_build(site):
    edit(site / "README.md", "<!-- --8<-- [start:twisted] -->", "<!-- the Twisted example -->")
    done = build(site)
    assert done.returncode != 0 and "twisted" in done.stderr, done.stderr


def test_the_readme_is_short_and_its_links_lead_somewhere():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= README_MAX_LINES
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if "://" not in t]
    assert len(local) >= 20, local
    missing = [t for t in local if not (REPO / t).exists()]
    assert missing == []
