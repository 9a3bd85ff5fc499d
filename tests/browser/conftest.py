"""Fixtures of the browser tests: one chromium and one node for the package (each test opens
its pages in browser contexts of their own, and signs in users of departments of its own),
and pages in contexts of their own."""

import pytest
from playwright.sync_api import Page, sync_playwright

from tests.support.browser import launch_chromium
from tests.support.nodes import Node


@pytest.fixture(scope="package")
def browser():
    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


@pytest.fixture(scope="package")
def node(tmp_path_factory):
    """A real single node (SQLite store) for the package's pages (tests/conftest.py's is one
    per module); a test may restart it, and starts it again."""
    n = Node(tmp_path_factory.mktemp("node"), name="single")
    n.start()
    yield n
    n.stop()


@pytest.fixture
def open_page(browser):
    """``open_page(url, viewport=None, setup=None)``: a page in a browser context of its own
    (its own storage: one user each); ``setup(page)`` runs before it loads (e.g. to route its
    WebSocket); console errors are printed for the failure report."""
    contexts = []

    def open_(url: str, viewport=None, setup=None) -> Page:
        context = browser.new_context(viewport=viewport or {"width": 1200, "height": 800})
        contexts.append(context)
        page = context.new_page()
        page.on("console", lambda m: m.type in ("error", "warning") and print(f"[console {m.type}] {m.text}"))
        page.on("pageerror", lambda e: print(f"[page error] {e}"))
        if setup is not None:
            setup(page)
        page.goto(url)
        return page

    yield open_
    for context in contexts:
        context.close()
