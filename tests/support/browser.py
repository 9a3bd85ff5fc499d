"""Helpers for the browser tests: Debian's chromium under Playwright, and a second way into
the node (an Autobahn|Python client in a subprocess) to send messages while the pages are
disconnected.

The subprocess keeps Twisted's reactor out of the test process, where pytest-twisted owns
it and Playwright's sync API runs its own event loop.
"""

import contextlib
import http.server
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from tests.support.nodes import REPO

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"


def launch_chromium(playwright):
    """Debian's chromium, headless; Playwright never downloads a browser here."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


def screenshot(page, name: str, full_page: bool = True) -> Path:
    """Save ``test-artifacts/screenshots/<name>.png`` and return its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page, animations="disabled")
    return path


@contextlib.contextmanager
def host_app(html: str, more: Optional[Dict[str, Tuple[str, Callable[[], bytes]]]] = None):
    """A stand-in host application: serves ``html`` at ``/host.html`` on a loopback port of
    its own (another origin than the node's), and each path of ``more`` as ``(content type,
    body maker)``, the body made anew for each request (in the server's own thread: the test's
    thread may be busy); yields its origin."""
    pages = {"/host.html": ("text/html; charset=utf-8", html.encode), **(more or {})}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path not in pages:
                self.send_error(404)
                return
            kind, make = pages[self.path]
            body = make()
            self.send_response(200)
            self.send_header("content-type", kind)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def send_via_wamp(url: str, token: str, items: Sequence[Tuple[str, str]],
                  timeout: float = 60.0) -> List[Dict[str, Any]]:
    """Call ``deptcast.send(to, message)`` for each item, in order, from a fresh WAMP session
    in a subprocess; return the envelopes. Raises if a send or the session fails."""
    request = json.dumps({"url": url, "token": token, "items": [list(i) for i in items]})
    done = subprocess.run([sys.executable, "-m", "tests.support.browser"], input=request,
                          capture_output=True, text=True, cwd=str(REPO), timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"sending over WAMP failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout)


def _main() -> None:
    from twisted.internet import defer, task

    from tests.support.wamp import connect

    request = json.loads(sys.stdin.read())

    @defer.inlineCallbacks
    def run(reactor):
        client = yield connect(request["url"], request["token"], timeout=30.0)
        envelopes = []
        for to, message in request["items"]:
            envelope = yield client.call("deptcast.send", to, message)
            envelopes.append(envelope)
        yield client.close()
        sys.stdout.write(json.dumps(envelopes))

    task.react(lambda reactor: run(reactor))


if __name__ == "__main__":
    _main()
