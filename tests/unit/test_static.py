"""Unit tests of components.edge.static: the page's security headers and which files ``/`` serves
(in memory, with Twisted's DummyRequest; the browser tests check the same on a real node)."""

import os
from pathlib import Path

import pytest
from twisted.web.resource import getChildForRequest
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from components.edge.static import FALLBACK_POLICY, PagePolicy, WebRoot, page_policy, web_directory
from tests.support.nodes import REPO

CHECKED_IN_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                     "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
                     "frame-ancestors 'self'")


def page(origins: str = "", policy: str = "default-src 'self'") -> str:
    return (f'<!doctype html><head><meta http-equiv="Content-Security-Policy" content="{policy}">'
            f'<meta name="deptcast-token-origins" content="{origins}"></head>')


def test_the_checked_in_page_policy_and_where_the_page_is():
    assert web_directory() == REPO / "web"  # an editable install: the checkout's web/
    assert page_policy((REPO / "web" / "index.html").read_text()) == (CHECKED_IN_POLICY, [])


def test_token_origins_may_frame_the_page_and_nothing_but_origins_gets_into_the_header():
    policy, rejected = page_policy(page("https://intranet.example.org/  http://10.0.0.5:8443 "
                                        "https://[::1]:9000 * 'unsafe-inline' javascript:alert(1) "
                                        "https://a.example/path https://x.example;script-src"))
    assert policy == ("default-src 'self'; frame-ancestors 'self' https://intranet.example.org "
                      "http://10.0.0.5:8443 https://[::1]:9000")
    assert rejected == ["*", "'unsafe-inline'", "javascript:alert(1)", "https://a.example/path",
                        "https://x.example;script-src"]


def test_a_frame_ancestors_of_the_meta_policy_is_replaced_and_a_missing_policy_falls_back():
    policy, _ = page_policy(page(policy="default-src 'self';  frame-ancestors *;\n  img-src  data:"))
    assert policy == "default-src 'self'; img-src data:; frame-ancestors 'self'"
    assert page_policy("<!doctype html><title>x</title>") == (f"{FALLBACK_POLICY}; frame-ancestors 'self'", [])


@pytest.fixture
def root(tmp_path: Path) -> WebRoot:
    for name, body in {"index.html": page("https://host.example"), "app.js": "x", "style.css": "y",
                       "bundle.mjs": "build", "package.json": "{}", "__init__.py": "", ".secret": "s",
                       "node_modules/autobahn/index.js": "z", "vendor/autobahn.js": "v", "vendor/README": "r"}.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
    web = WebRoot(str(tmp_path))
    web.policy = PagePolicy(tmp_path / "index.html")
    return web


def get(root: WebRoot, path: str) -> DummyRequest:
    request = DummyRequest([p.encode() for p in path.split("/")])
    child = getChildForRequest(root, request)
    body = child.render(request)
    assert body == NOT_DONE_YET or isinstance(body, bytes)
    return request


def header(request: DummyRequest, name: str):
    values = request.responseHeaders.getRawHeaders(name.encode())
    return values[0].decode() if values else None


@pytest.mark.parametrize("path", ["", "index.html", "app.js", "style.css", "vendor/autobahn.js"])
def test_the_page_files_are_served_with_the_headers(root, path):
    request = get(root, path)
    assert request.responseCode in (None, 200)
    assert header(request, "content-security-policy") == "default-src 'self'; frame-ancestors 'self' https://host.example"
    assert header(request, "x-content-type-options") == "nosniff"
    assert header(request, "referrer-policy") == "no-referrer"
    assert header(request, "cache-control") == "max-age=60, public"


def test_module_scripts_have_a_javascript_type(root):
    assert header(get(root, "app.js"), "content-type") == "text/javascript; charset=utf-8"


@pytest.mark.parametrize("path", ["bundle.mjs", "package.json", "__init__.py", ".secret",
                                  "node_modules/autobahn/index.js", "node_modules/", "vendor/README", "vendor/",
                                  "missing.js", "../index.html"])
def test_nothing_else_is_served(root, path):
    assert get(root, path).responseCode == 404


def test_a_changed_index_html_changes_the_headers(root, tmp_path):
    assert header(get(root, "app.js"), "content-security-policy").endswith("'self' https://host.example")
    index = tmp_path / "index.html"
    index.write_text(page("https://other.example https://third.example"))
    stat = index.stat()
    os.utime(index, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # even on a coarse clock
    assert header(get(root, "app.js"), "content-security-policy").endswith(
        "'self' https://other.example https://third.example")
