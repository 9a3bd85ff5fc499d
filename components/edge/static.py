"""``/``: the browser client's files, served with the headers a page that holds bearer tokens
needs. Crossbar's own ``static`` web service cannot add headers; this is a
:class:`twisted.web.static.File` that can, mounted as the web transport's root resource.

Where the files come from: the package ``deptcast_web`` (the checkout's ``web/`` folder,
shipped as package data), so a node serves the page of the Python environment it runs in:
the checkout's with an editable install, ``site-packages`` with ``pip install .``.

What every answer carries:

* ``Content-Security-Policy``: the policy of ``index.html``'s ``<meta http-equiv>`` tag (one
  place to read and change it), plus ``frame-ancestors`` for the page's own origin and the
  origins of its ``<meta name="deptcast-token-origins">`` tag: the applications that may hand
  the page a token are the ones that may embed it, and no other site can frame it (a
  ``<meta>`` policy cannot carry ``frame-ancestors``: browsers ignore it there);
* ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: no-referrer``;
* ``Cache-Control: max-age=60, public``: short, so an upgrade reaches browsers soon;
* on JavaScript files only (``deptcast.js``, the modules it imports, ``vendor/``):
  ``Access-Control-Allow-Origin: *`` and ``Cross-Origin-Resource-Policy: cross-origin``, so a
  front end on another origin can ``import { Client } from "https://node/deptcast.js"`` (a
  module script is fetched with CORS). They are public code with no credentials in them; the
  page itself (``index.html``) stays same-origin.

Only the page's kinds of files are served (no directory listings, no dot files, nothing under
``node_modules``, no Python, build scripts or package metadata).
"""

import importlib.resources
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import txaio
from twisted.web import pages
from twisted.web.static import File

txaio.use_twisted()  # a Twisted module: its txaio loggers are Twisted's

#: the package holding the page's files (``web/`` in the checkout)
WEB_PACKAGE = "deptcast_web"
#: seconds browsers may cache a file
CACHE_SECONDS = 60
#: the kinds of files the page is made of
SERVED_SUFFIXES = frozenset({".html", ".js", ".css", ".svg", ".png", ".ico"})
#: the files other origins may load: the browser client's ES modules
MODULE_SUFFIXES = frozenset({".js"})
#: the headers that let a page of another origin import them
MODULE_HEADERS = ((b"access-control-allow-origin", b"*"), (b"cross-origin-resource-policy", b"cross-origin"))
#: folder names never served (the npm packages the bundle is built from)
HIDDEN_NAMES = frozenset({"node_modules"})
#: the policy for a page whose ``index.html`` carries none
FALLBACK_POLICY = "default-src 'self'; object-src 'none'; base-uri 'none'"
#: an origin as ``frame-ancestors`` may name it: scheme, host, optional port; nothing else
_ORIGIN = re.compile(r"^https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*)(:[0-9]{1,5})?$")

log = txaio.make_logger()


class _MetaTags(HTMLParser):
    """Collects the content of the ``<meta>`` tags that matter to the headers."""

    def __init__(self) -> None:
        super().__init__()
        self.policy: Optional[str] = None
        self.origins: Optional[str] = None

    def handle_starttag(self, tag: str, attrs: List[Tuple[str, Optional[str]]]) -> None:
        if tag != "meta":
            return
        a = {k.lower(): v or "" for k, v in attrs}
        if a.get("http-equiv", "").lower() == "content-security-policy" and self.policy is None:
            self.policy = a.get("content", "")
        elif a.get("name", "").lower() == "deptcast-token-origins" and self.origins is None:
            self.origins = a.get("content", "")


def page_policy(html: str) -> Tuple[str, List[str]]:
    """The ``Content-Security-Policy`` header for a page, from its ``index.html``: its meta
    policy (whitespace tidied, any ``frame-ancestors`` of its own replaced) plus
    ``frame-ancestors 'self'`` and the token origins. Also returns the listed origins that
    were left out because they are not plain origins.

    :returns: ``(policy, rejected origins)``
    :rtype: tuple
    """
    tags = _MetaTags()
    tags.feed(html)
    tags.close()
    directives = [" ".join(d.split()) for d in (tags.policy or FALLBACK_POLICY).split(";")]
    directives = [d for d in directives if d and d.split()[0].lower() != "frame-ancestors"]
    ancestors, rejected = ["'self'"], []
    for origin in (tags.origins or "").split():
        origin = origin.rstrip("/")
        if _ORIGIN.match(origin):
            ancestors.append(origin)
        else:
            rejected.append(origin)
    directives.append("frame-ancestors " + " ".join(ancestors))
    return "; ".join(directives), rejected


class PagePolicy:
    """The headers every answer carries, read from ``index.html`` and read again when it changes
    (an operator's edit of the token origins applies without a restart).

    :param index: the page's ``index.html``
    """

    def __init__(self, index: Path) -> None:
        self.index = index
        self._stamp: Optional[Tuple[int, int]] = None
        self._headers: List[Tuple[bytes, bytes]] = []

    def headers(self) -> List[Tuple[bytes, bytes]]:
        """The security headers, as ``(name, value)`` byte pairs.

        :rtype: list
        """
        try:
            st = self.index.stat()
            stamp: Optional[Tuple[int, int]] = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        if stamp != self._stamp or not self._headers:
            try:
                html = self.index.read_text(encoding="utf-8")
            except OSError:
                html = ""
            policy, rejected = page_policy(html)
            if rejected:
                log.warn("deptcast web: left out of frame-ancestors (not an origin like "
                         "https://host.example:8443): {rejected}", rejected=" ".join(rejected))
            self._headers = [
                (b"content-security-policy", policy.encode("ascii", "replace")),
                (b"x-content-type-options", b"nosniff"),
                (b"referrer-policy", b"no-referrer"),
            ]
            self._stamp = stamp
        return self._headers


class WebRoot(File):
    """The page's folder: :class:`File` with the page's headers and only the page's files."""

    indexNames = ["index.html"]
    contentTypes = {**File.contentTypes, ".js": "text/javascript; charset=utf-8",
                    ".css": "text/css; charset=utf-8", ".html": "text/html; charset=utf-8",
                    ".svg": "image/svg+xml"}
    childNotFound = pages.notFound(  # type: ignore[assignment]  # Twisted types it as its default's class
        "No such file", "This node serves the page's own files only.")
    policy: Optional[PagePolicy] = None
    cache_seconds: int = CACHE_SECONDS

    def getChild(self, path, request):
        name = path.decode("utf-8", "replace") if isinstance(path, bytes) else path
        if name.startswith(".") or name in HIDDEN_NAMES:
            return self.childNotFound
        child = super().getChild(path, request)
        if isinstance(child, File) and not child.isdir() and child.splitext()[1].lower() not in SERVED_SUFFIXES:
            return self.childNotFound
        return child

    def directoryListing(self):
        return self.childNotFound

    def render_GET(self, request):
        if self.policy is not None:
            for name, value in self.policy.headers():
                request.setHeader(name, value)
        request.setHeader(b"cache-control", f"max-age={self.cache_seconds}, public".encode())
        if self.splitext()[1].lower() in MODULE_SUFFIXES:
            for name, value in MODULE_HEADERS:
                request.setHeader(name, value)
        return super().render_GET(request)

    render_HEAD = render_GET

    def createSimilarFile(self, path):
        similar = super().createSimilarFile(path)
        similar.policy = self.policy
        similar.cache_seconds = self.cache_seconds
        return similar


def web_directory() -> Path:
    """The folder of the page's files: the ``deptcast_web`` package.

    :rtype: Path
    """
    return Path(str(importlib.resources.files(WEB_PACKAGE)))


def create_web_root(extra: Optional[Dict[str, Any]] = None) -> WebRoot:
    """Crossbar's factory of the web transport's ``/`` (a ``"resource"`` path service).

    :param extra: ``{"cache_timeout": seconds}``
    :rtype: WebRoot
    """
    extra = extra or {}
    directory = web_directory()
    root = WebRoot(str(directory))
    root.policy = PagePolicy(directory / "index.html")
    root.cache_seconds = int(extra.get("cache_timeout", CACHE_SECONDS))
    if not (directory / "vendor" / "autobahn.js").is_file():
        log.warn("deptcast web: {dir}/vendor/autobahn.js is missing: the page cannot connect "
                 "(build it with scripts/install, or `npm ci && npm run build` in web/)", dir=directory)
    log.info("deptcast web: the page is served from {dir}", dir=directory)
    return root
