"""Session life in a real chromium against a real node: the page embedded in a host
application renews its short-lived token by asking the host (``deptcast.token.request``) and
handing the newer token to the node (``deptcast.session.refresh``) on one WebSocket, missing
nothing; and a revoke ends the page's session and the page tells its host
(``deptcast.revoked``) instead of signing in again."""

import json
import os
import time
import urllib.request
from contextlib import contextmanager
from typing import Dict, List

from playwright.sync_api import expect

from components.core.tokens import issue_token
from components.edge.static import page_policy
from tests.support.browser import host_app
from tests.support.nodes import TEST_SECRET, token

TIMEOUT_MS = 30_000

expect.set_options(timeout=TIMEOUT_MS)


def _host_html(page_url: str) -> str:
    """A host application: posts the first token when the page is ready, answers each token
    request with a newer one (minted by the host's own server, ``/token``), and notes what it
    is told."""
    return f"""<!doctype html><title>host</title>
      <iframe id="deptcast" src="{page_url}" width="900" height="600" title="deptcast"></iframe>
      <script>
        window.told = [];
        addEventListener("message", async (e) => {{
          if (e.origin !== "{page_url.rstrip('/')}") return;
          window.told.push(e.data.type);
          if (e.data.type === "deptcast.ready" || e.data.type === "deptcast.token.request") {{
            const token = await (await fetch("/token")).text();
            e.source.postMessage({{type: "deptcast.token", token, request: e.data.request}}, e.origin);
          }}
        }});
      </script>"""


@contextmanager
def embedded(browser, node, mint):
    """The page in the host's iframe, the host's origin allowed (index.html's meta tag and the
    header the node derives from it); yields ``(page, frame, websockets)``."""
    page_url = f"http://127.0.0.1:{node.port}/"
    with host_app(_host_html(page_url), {"/token": ("text/plain", lambda: mint().encode())}) as host:
        def allow_host(route):
            answer = route.fetch()
            body = answer.text().replace('name="deptcast-token-origins" content=""',
                                         f'name="deptcast-token-origins" content="{host}"')
            policy, _ = page_policy(body)
            route.fulfill(response=answer, body=body, headers={**answer.headers, "content-security-policy": policy})

        context = browser.new_context(permissions=["local-network-access"])
        try:
            context.route(page_url, allow_host)
            page = context.new_page()
            sockets: List[str] = []
            page.on("websocket", lambda ws: sockets.append(ws.url))
            page.goto(f"{host}/host.html")
            yield page, page.frame_locator("#deptcast"), sockets
        finally:
            context.close()


def _post(node, path: str, body: dict, bearer: str) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{node.port}{path}", data=json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {bearer}", "Content-Type": "application/json"},
                                     method="POST")
    with urllib.request.urlopen(request, timeout=30) as answer:
        return answer.status


def test_the_page_renews_a_short_token_from_its_host_on_one_connection(node, browser):
    dept = f"brf-{os.urandom(3).hex()}"
    minted: Dict[str, int] = {"n": 0}

    def mint() -> str:
        minted["n"] += 1
        return issue_token(TEST_SECRET, "rita", dept, "member", 8)

    with embedded(browser, node, mint) as (page, frame, sockets):
        expect(frame.locator("#conn")).to_have_attribute("data-state", "connected")
        first_expires = time.monotonic() + 8
        sent: List[str] = []
        sender = token("pat", "ops", "publisher")
        # a notice every second or so, until the page has renewed twice and the first token
        # has expired (at most three lifetimes of it)
        while minted["n"] < 3 or time.monotonic() < first_expires + 1:
            assert len(sent) < 24, f"after {len(sent)} s the host minted {minted['n']} tokens"
            sent.append(f"n{len(sent)}")
            _post(node, "/api/send", {"to": dept, "message": sent[-1]}, sender)
            page.wait_for_timeout(1000)
        expect(frame.locator("#timeline .msg .text")).to_contain_text(list(reversed(sent)))
        expect(frame.locator("#conn")).to_have_attribute("data-state", "connected")
        told = page.evaluate("window.told")
        assert told.count("deptcast.token.request") >= 2 and minted["n"] >= 3, (told, minted)
        assert "deptcast.token_expired" not in told
        assert len([u for u in sockets if u.endswith("/ws")]) == 1, sockets


def test_a_revoked_page_tells_its_host_and_stays_signed_out(node, browser):
    dept = f"brv-{os.urandom(3).hex()}"

    def mint() -> str:
        return issue_token(TEST_SECRET, "ron", dept, "member", 600)

    with embedded(browser, node, mint) as (page, frame, sockets):
        expect(frame.locator("#conn")).to_have_attribute("data-state", "connected")
        assert _post(node, "/api/revoke", {"user_key": f"{dept}_ron"}, token("hr", "ops", "admin")) == 200
        expect(frame.locator("#conn")).to_have_text("Signed out: your access was revoked")
        page.wait_for_function("window.told.includes('deptcast.revoked')")
        page.wait_for_timeout(2000)   # time in which a page that signed in again would have
        assert len([u for u in sockets if u.endswith("/ws")]) == 1, sockets
        expect(frame.locator("#conn")).to_have_text("Signed out: your access was revoked")
