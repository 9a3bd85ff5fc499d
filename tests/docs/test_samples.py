"""Every code sample of the docs (``docs/``) and the README, run against a real node as a reader
would run it (how, and what a sample may expect: :mod:`tests.docs.samples`).

Samples run page by page, in the page's order (a sample run alone runs the page's earlier ones
first: it may rely on what they did), against one node (SQLite, started with ``crossbar
start``) named ``n1``. A block that is shown but not run says why: its language is in
:data:`~tests.docs.samples.NOT_RUN` (systemd units, Prometheus configs, the page's JavaScript,
sample answers and log lines), or a ``<!-- skip: next "why" -->`` comment stands before it (a
node started until Ctrl-C, systemd, several hosts, paths under ``/srv``); those are reported as
skipped, with their reason.
"""

from pathlib import Path
from typing import Dict, List

import pytest

from tests.docs.samples import PageState, Sample, base_env, collect, run_in_page
from tests.support.nodes import REPO, TEST_SECRET

#: the pages whose samples run: the README, then the docs
PAGES = [REPO / "README.md"] + sorted((REPO / "docs").rglob("*.md"))


def _collect() -> (List[Sample], List[str]):
    samples, problems = [], []
    for page in PAGES:
        found, wrong = collect(page)
        samples += found
        problems += wrong
    return samples, problems


SAMPLES, PROBLEMS = _collect()


def test_every_block_is_run_or_says_why_not():
    assert PROBLEMS == []
    assert len([s for s in SAMPLES if not s.skip]) >= 15, "the docs' samples were not found"


@pytest.fixture(scope="module")
def pages(docs_node, tmp_path_factory) -> Dict[Path, PageState]:
    """Each page's state (environment, working directory), made when its first sample runs."""

    class States(Dict[Path, PageState]):
        def __missing__(self, page: Path) -> PageState:
            cwd = tmp_path_factory.mktemp(page.stem)
            state = PageState(base_env(docs_node.url, TEST_SECRET), cwd, address=f"127.0.0.1:{docs_node.port}")
            self[page] = state
            return state

    return States()


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.id for s in SAMPLES])
def test_sample(sample: Sample, pages):
    if sample.skip:
        pytest.skip(f"not run: {sample.skip}")
    run_in_page(sample, [s for s in SAMPLES if s.path == sample.path], pages[sample.path])
