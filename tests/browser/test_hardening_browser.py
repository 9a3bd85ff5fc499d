"""An old page in a real chromium passes its token as a WebSocket subprotocol (issue 9, item 8):
the browser accepts the node's answer, and the page works as with ``?token=``."""

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
