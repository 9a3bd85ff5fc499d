"""An old page in a real chromium passes its token as a WebSocket subprotocol (issue 9, item 8):
the browser accepts the node's answer, and the page works as with ``?token=``."""

import re

from components.edge.static import web_directory
from tests.support.browser import host_app
from tests.support.nodes import token

OPEN_AND_ECHO = """async ([url, protocols, to]) => await new Promise((resolve) => {
    const ws = protocols ? new WebSocket(url, protocols) : new WebSocket(url);
    const seen = {events: []};
    ws.onopen = () => { seen.events.push("open"); seen.protocol = ws.protocol;
                        ws.send(JSON.stringify({to: to, message: "from the browser"})); };
    ws.onmessage = (e) => { seen.events.push("message"); seen.data = e.data; ws.close(); };
    ws.onerror = () => { seen.events.push("error"); };
    ws.onclose = (e) => { seen.events.push("close"); seen.code = e.code; resolve(seen); };
    setTimeout(() => resolve(seen), 15000);
})"""


def test_an_old_page_passes_its_token_as_a_subprotocol(node, browser):
    url = f"ws://127.0.0.1:{node.port}/webSocket/brdept_bea"
    page = browser.new_page()
    try:
        page.goto(f"http://127.0.0.1:{node.port}/")
        seen = page.evaluate(OPEN_AND_ECHO, [url, ["deptcast.legacy", "deptcast.token." + token("bea", "brdept")],
                                             "brdept"])
        assert seen["events"] == ["open", "message", "close"], seen
        assert (seen["protocol"], seen["data"]) == ("deptcast.legacy", "from the browser")
        # without any token the node refuses the handshake (the browser sees an error, no open)
        seen = page.evaluate(OPEN_AND_ECHO, [url, None, "brdept"])
        assert "open" not in seen["events"] and "error" in seen["events"], seen
    finally:
        page.close()


def test_a_front_end_on_another_origin_imports_the_client_module(node, browser):
    """The node serves deptcast.js, the modules it imports and vendor/ with CORS: a page of
    another origin imports it (a module script is fetched in CORS mode; without the header
    chromium refuses it)."""
    node_url = f"http://127.0.0.1:{node.port}"
    host_html = f"""<!doctype html><title>front end</title>
      <script type="module">
        import {{ Client }} from "{node_url}/deptcast.js";
        window.imported = typeof Client;
      </script>
      <script>window.addEventListener("error", (e) => {{ window.imported = "error"; }}, true);</script>"""
    with host_app(host_html) as host:
        page = browser.new_page()
        try:
            page.goto(f"{host}/host.html")
            page.wait_for_function("() => window.imported !== undefined", timeout=30_000)
            assert page.evaluate("() => window.imported") == "function"
        finally:
            page.close()


def test_only_the_modules_carry_cors_headers(node):
    import urllib.request
    modules = sorted(p.name for p in web_directory().glob("*.js")) + ["vendor/autobahn.js"]
    imported = set(re.findall(r'from "\./([a-z]+\.js)"', (web_directory() / "deptcast.js").read_text()))
    assert imported and imported <= set(modules)
    for name in modules:
        with urllib.request.urlopen(f"http://127.0.0.1:{node.port}/{name}", timeout=10) as r:
            assert r.headers["access-control-allow-origin"] == "*", name
    with urllib.request.urlopen(f"http://127.0.0.1:{node.port}/index.html", timeout=10) as r:
        assert r.headers["access-control-allow-origin"] is None
