"""The browser client (``web/``) in a real headless chromium against a real node.

One node for the module (restarted once, in the restart test) and a second one in
quick-start mode for the dev sign-in form. Every test signs in users of its own, but
messages to ``All`` reach every user: :class:`AllLog` keeps those, so a test expects exactly
its own messages plus the ``All`` messages sent before it.

Screenshots of the main states go to ``test-artifacts/screenshots/``.
"""

import json
import re
import time
from typing import List

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from components.core.tokens import issue_token
from tests.support.browser import host_app, launch_chromium, screenshot, send_via_wamp
from tests.support.nodes import token
from tests.support.nodes import TEST_SECRET, Node

#: generous: two cores, and other test modules run beside this one
TIMEOUT_MS = 30_000
RECONNECT_TIMEOUT_MS = 60_000

expect.set_options(timeout=TIMEOUT_MS)


class AllLog:
    """The messages sent to ``All`` so far in this module, oldest first."""

    def __init__(self) -> None:
        self.messages: List[str] = []

    def newest_first(self) -> List[str]:
        return list(reversed(self.messages))


@pytest.fixture(scope="module")
def all_log() -> AllLog:
    return AllLog()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def dev_node(tmp_path_factory):
    """A node in quick-start mode: only the dev sign-in form test uses it."""
    n = Node(tmp_path_factory.mktemp("devnode"), name="dev", env={"DEPTCAST_DEV": "1"})
    n.start()
    yield n
    n.stop()


def base_url(node: Node) -> str:
    return f"http://127.0.0.1:{node.port}/"


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


def connection(page: Page):
    return page.locator("#conn")


def wait_connected(page: Page, timeout: int = TIMEOUT_MS) -> None:
    expect(connection(page)).to_have_attribute("data-state", "connected", timeout=timeout)


def texts(page: Page):
    return page.locator("#timeline .msg .text")


def send(page: Page, scope: str, message: str, dept: str = None, user: str = None,
         keyboard: bool = False) -> None:
    """Send through the page's send box and wait for its confirmation."""
    page.check(f'#send-form input[name="to"][value="{scope}"]')
    if dept is not None:
        page.fill("#to-dept", dept)
    if user is not None:
        page.fill("#to-user", user)
    page.fill("#message", message)
    if keyboard:
        page.press("#message", "Control+Enter")
    else:
        page.click("#send")
    expect(page.locator("#send-status")).to_have_text(re.compile(r"^Sent to "))
    expect(page.locator("#send-error")).to_have_text("")
    expect(page.locator("#message")).to_have_value("")


def expect_timeline(page: Page, newest_first: List[str], scopes: List[str] = None) -> None:
    """The timeline shows exactly these messages, newest first, each once."""
    expect(texts(page)).to_have_text(newest_first)
    if scopes is not None:
        assert [li.get_attribute("data-scope") for li in page.locator("#timeline .msg").all()] == scopes
    ids = [li.get_attribute("data-id") for li in page.locator("#timeline .msg").all()]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids), ids


# ---- sign-in ----------------------------------------------------------------------------------

def test_dev_form_is_off_without_quick_start(node, open_page):
    page = open_page(base_url(node))
    # the page asked the node, the node said no (404): the page waits for its host
    expect(page.locator("#signin")).to_have_attribute("data-offer", "host")
    answer = page.request.get(base_url(node) + "dev/token")
    assert answer.status == 404
    expect(page.locator("#signin-wait")).to_be_visible()
    expect(page.locator("#dev-form")).to_be_hidden()
    expect(connection(page)).to_have_attribute("data-state", "offline")
    expect(connection(page)).to_have_text("Not signed in")
    expect(page.locator("#app")).to_be_hidden()
    screenshot(page, "signin-waiting-for-host")


def test_dev_form_signs_in_in_quick_start(dev_node, open_page):
    page = open_page(base_url(dev_node))
    form = page.locator("#dev-form")
    expect(page.locator("#signin")).to_have_attribute("data-offer", "dev-form")
    expect(form).to_be_visible()
    expect(page.locator("#signin-wait")).to_be_hidden()
    expect(page.locator("#dev-user")).to_be_focused()
    # a malformed name is caught before anything is asked
    page.fill("#dev-user", "not a name!")
    page.fill("#dev-dept", "hq")
    page.click("#dev-form button")
    expect(page.locator("#signin-error")).to_contain_text("User id: use letters")
    expect(page.locator("#dev-user")).to_have_attribute("aria-invalid", "true")
    page.fill("#dev-user", "zoe")
    page.select_option("#dev-role", "publisher")
    screenshot(page, "signin-dev-form")
    page.press("#dev-dept", "Enter")  # keyboard only
    wait_connected(page)
    expect(page.locator("#who")).to_have_text("zoe · hq · publisher")
    expect(page.locator("#to-all-choice")).to_be_visible()
    expect(page.locator("#signin")).to_be_hidden()
    # sign out: back to the form, offline
    page.click("#signout")
    expect(form).to_be_visible()
    expect(connection(page)).to_have_attribute("data-state", "offline")


def test_host_token_by_post_message_only_from_allowed_origins(node, browser, all_log):
    """A host application on another origin embeds the page and posts the token: ignored
    unless index.html's meta tag lists that origin (the operator's setting)."""
    page_url = base_url(node)
    host_html = f"""<!doctype html><title>host</title>
      <iframe id="deptcast" src="{page_url}" width="900" height="600" title="deptcast"></iframe>
      <script>
        addEventListener("message", (e) => {{
          if (e.origin !== "{page_url.rstrip('/')}") return;
          document.title = "host got " + e.data.type;
          if (e.data.type === "deptcast.ready")
            e.source.postMessage({{type: "deptcast.token", token: "{token('hank', 'host-dept')}"}}, e.origin);
        }});
      </script>"""
    expected = all_log.newest_first()
    with host_app(host_html) as host:
        def allow_host(route):
            # the operator's edit of index.html: list the host application's origin
            answer = route.fetch()
            body = answer.text().replace('name="deptcast-token-origins" content=""',
                                         f'name="deptcast-token-origins" content="{host}"')
            assert host in body
            route.fulfill(response=answer, body=body)

        for allowed in (False, True):
            # the edited index.html comes from Playwright, not from a loopback address:
            # chromium then wants the user's leave for the page to reach the node
            context = browser.new_context(permissions=["local-network-access"] if allowed else [])
            try:
                if allowed:
                    context.route(page_url, allow_host)
                page = context.new_page()
                page.on("console", lambda m: m.type == "error" and print(f"[console {m.type}] {m.text}"))
                page.goto(f"{host}/host.html")
                frame = page.frame_locator("#deptcast")
                if not allowed:
                    # the page says it is ready to allowed origins only, so this host never heard
                    expect(frame.locator("#signin-wait")).to_be_visible()
                    with page.expect_console_message(lambda m: "ignored a token posted by" in m.text) as seen:
                        page.evaluate("t => document.getElementById('deptcast').contentWindow"
                                      ".postMessage({type: 'deptcast.token', token: t}, '*')",
                                      token("hank", "host-dept"))
                    assert seen.value.text == f"deptcast: ignored a token posted by {host}: not an allowed origin"
                    expect(page).to_have_title("host")
                    expect(frame.locator("#signin-wait")).to_be_visible()
                    expect(frame.locator("#conn")).to_have_text("Not signed in")
                else:
                    expect(page).to_have_title("host got deptcast.ready")
                    expect(frame.locator("#conn")).to_have_attribute("data-state", "connected")
                    expect(frame.locator("#who")).to_have_text("hank · host-dept · member")
                    expect(frame.locator("#timeline .msg .text")).to_have_text(expected)
                    screenshot(page, "embedded-in-host")
            finally:
                context.close()


def test_expired_token_goes_offline_until_the_host_sends_a_new_one(node, open_page, all_log):
    expired = issue_token(TEST_SECRET, "exa", "exp-dept", "member", ttl=60, now=time.time() - 3600)
    page = open_page(base_url(node) + "#token=" + expired)
    expect(connection(page)).to_have_attribute("data-state", "offline")
    expect(connection(page)).to_have_text("Offline: your sign-in has expired")
    expect(page.locator("#who")).to_have_text("exa · exp-dept · member")
    # the host renews the token: the page connects with it, no reload
    page.evaluate("t => window.postMessage({type: 'deptcast.token', token: t}, location.origin)",
                  token("exa", "exp-dept"))
    wait_connected(page)
    expect_timeline(page, all_log.newest_first())


# ---- the timeline: who sees what --------------------------------------------------------------

def test_each_user_sees_exactly_their_messages(node, open_page, all_log):
    base = base_url(node)
    before = all_log.newest_first()
    alice = open_page(base + "#token=" + token("alice", "cardio"))
    bob = open_page(base + "#token=" + token("bob", "radio"))
    # the publisher's host posts the token from the page's own origin
    pat = open_page(base)
    expect(pat.locator("#signin-wait")).to_be_visible()
    pat.evaluate("t => window.postMessage({type: 'deptcast.token', token: t}, location.origin)",
                 token("pat", "hq", "publisher"))
    for page in (alice, bob, pat):
        wait_connected(page)
        # the fragment never stays in the address bar
        assert "token" not in page.url
    expect(alice.locator("#who")).to_have_text("alice · cardio · member")

    # the send box offers only what the role may do
    expect(alice.locator("#to-all-choice")).to_be_hidden()
    expect(alice.locator("#to-dept")).to_have_js_property("readOnly", True)
    expect(alice.locator("#to-dept")).to_have_value("cardio")
    expect(alice.locator("#to-user-label")).to_have_text("One person in cardio")
    expect(pat.locator("#to-all-choice")).to_be_visible()
    expect(pat.locator("#to-dept")).to_have_js_property("readOnly", False)

    send(pat, "dept", "pat to cardio", dept="cardio")
    send(pat, "dept", "pat to radio", dept="radio")
    send(pat, "all", "pat to all")
    all_log.messages.append("pat to all")
    send(pat, "user", "pat to alice", dept="cardio", user="alice")
    send(pat, "user", "pat to bob", dept="radio", user="bob")
    send(alice, "dept", "alice to cardio", keyboard=True)
    send(alice, "user", "alice to carol", user="carol")  # nobody here is carol
    send(bob, "dept", "bob to radio")
    send(bob, "user", "bob to dan", user="dan")
    # a last message to everyone: once each page shows it, nothing else is on its way
    send(pat, "all", "final marker")
    all_log.messages.append("final marker")

    expect_timeline(alice, ["final marker", "alice to cardio", "pat to alice", "pat to all",
                            "pat to cardio"] + before,
                    ["all", "dept", "user", "all", "dept"] + ["all"] * len(before))
    expect_timeline(bob, ["final marker", "bob to radio", "pat to bob", "pat to all",
                          "pat to radio"] + before)
    expect_timeline(pat, ["final marker", "pat to all"] + before)
    first = alice.locator("#timeline .msg").nth(1)
    expect(first.locator(".scope")).to_have_text("Dept cardio")
    expect(first.locator(".from")).to_have_text("from alice (cardio)")
    expect(alice.locator("#timeline .msg").nth(2).locator(".scope")).to_have_text("Direct to you")
    expect(alice.locator("#timeline .msg").nth(2).locator(".from")).to_have_text("from pat (hq)")
    screenshot(alice, "timeline-member")
    screenshot(pat, "timeline-publisher")

    # the same page on a phone-sized screen
    phone = open_page(base + "#token=" + token("alice", "cardio"), viewport={"width": 390, "height": 844})
    wait_connected(phone)
    expect_timeline(phone, ["final marker", "alice to cardio", "pat to alice", "pat to all",
                            "pat to cardio"] + before)
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(phone, "timeline-phone")


def test_online_panel_shows_exactly_the_users_online(node, open_page):
    """The Online panel lists the department's users from deptcast.presence.online, then
    follows the deptcast.presence.<dept> events (well within the page's 30 s refresh)."""
    base, dept = base_url(node), "presb"
    soon = 10_000  # the events, not the periodic refresh

    def panel(page: Page):
        return page.get_by_role("complementary", name="Online")

    alice = open_page(base + "#token=" + token("alice-p", dept))
    wait_connected(alice)
    expect(panel(alice).get_by_role("listitem")).to_have_text(["alice-p"])
    expect(alice.locator("#online-note")).to_have_text(f"1 online in {dept}")
    # bob on two pages counts once; dan of another department is not listed
    bob1 = open_page(base + "#token=" + token("bob-p", dept))
    bob2 = open_page(base + "#token=" + token("bob-p", dept))
    dan = open_page(base + "#token=" + token("dan-p", "presc"))
    for page in (bob1, bob2, dan):
        wait_connected(page)
    expect(panel(alice).get_by_role("listitem")).to_have_text(["alice-p", "bob-p"], timeout=soon)
    expect(alice.locator("#online-note")).to_have_text(f"2 online in {dept}")
    expect(panel(bob2).get_by_role("listitem")).to_have_text(["alice-p", "bob-p"])
    expect(panel(dan).get_by_role("listitem")).to_have_text(["dan-p"])
    screenshot(alice, "online-panel")
    # bob closes one page: still online; carol comes, dan goes
    bob1.close()
    carol = open_page(base + "#token=" + token("carol-p", dept))
    wait_connected(carol)
    dan.close()
    expect(panel(alice).get_by_role("listitem")).to_have_text(["alice-p", "bob-p", "carol-p"], timeout=soon)
    expect(panel(carol).get_by_role("listitem")).to_have_text(["alice-p", "bob-p", "carol-p"])
    # bob's last page goes: bob is offline, on every page of the department
    bob2.close()
    for page in (alice, carol):
        expect(panel(page).get_by_role("listitem")).to_have_text(["alice-p", "carol-p"], timeout=soon)
        expect(page.locator("#online-note")).to_have_text(f"2 online in {dept}")


def test_refused_send_shows_error(node, open_page, all_log):
    page = open_page(base_url(node) + "#token=" + token("erin", "surgery"))
    wait_connected(page)
    before = all_log.newest_first()
    expect_timeline(page, before)

    # over the node's limit (64 KiB by default)
    page.fill("#message", "x" * (64 * 1024 + 1))
    page.click("#send")
    expect(page.locator("#send-error")).to_contain_text("deptcast.error.too_large")
    expect(page.locator("#send-error")).to_contain_text("Not sent")
    expect(page.locator("#message")).to_have_value("x" * (64 * 1024 + 1))  # kept, to shorten

    # a member's send box cannot address another department; a tampered one is refused
    page.evaluate("document.getElementById('to-dept').readOnly = false")
    page.fill("#to-dept", "radio")
    page.fill("#message", "to a department not mine")
    page.click("#send")
    expect(page.locator("#send-error")).to_have_text(
        "Not sent: a member may only send to its own department (surgery) (deptcast.error.not_authorized)")
    screenshot(page, "send-refused")

    # a malformed user id never leaves the page
    page.check('#send-form input[name="to"][value="user"]')
    page.fill("#to-user", "no spaces")
    page.fill("#message", "hello")
    page.click("#send")
    expect(page.locator("#send-error")).to_contain_text("User id: use letters")
    expect(page.locator("#to-user")).to_be_focused()

    send(page, "dept", "accepted after all", dept="surgery")
    expect_timeline(page, ["accepted after all"] + before)


# ---- reconnect and reload without gaps -------------------------------------------------------

def test_node_restart_shows_reconnecting_then_catches_up(node, open_page, all_log):
    base = base_url(node)
    before = all_log.newest_first()
    ivy = open_page(base + "#token=" + token("ivy", "icu"))
    olga = open_page(base + "#token=" + token("olga", "ops", "publisher"))
    for page in (ivy, olga):
        wait_connected(page)
    send(olga, "dept", "before the restart", dept="icu")
    expect_timeline(ivy, ["before the restart"] + before)

    node.stop()
    for page in (ivy, olga):
        expect(connection(page)).to_have_attribute("data-state", "reconnecting")
        expect(connection(page)).to_contain_text("reconnecting")
    screenshot(ivy, "reconnecting")
    # keep the pages away until the node has the messages, so they can only come from history
    for page in (ivy, olga):
        page.context.set_offline(True)
        expect(connection(page)).to_have_attribute("data-state", "offline")
    screenshot(ivy, "offline")
    node.start()
    meanwhile = send_via_wamp(node.url, token("sam", "ops", "publisher"), [
        ("icu", "meanwhile to icu 1"),
        ("All", "meanwhile to all"),
        ("icu_ivy", "meanwhile to ivy"),
        ("lab", "meanwhile to lab"),
        ("ops", "meanwhile to ops"),
        ("icu", "meanwhile to icu 2"),
    ])
    all_log.messages.append("meanwhile to all")
    assert [e["message"] for e in meanwhile][0] == "meanwhile to icu 1"
    expect(connection(ivy)).to_have_attribute("data-state", "offline")
    expect_timeline(ivy, ["before the restart"] + before)

    for page in (ivy, olga):
        page.context.set_offline(False)
    for page in (ivy, olga):
        wait_connected(page, RECONNECT_TIMEOUT_MS)
    expect_timeline(ivy, ["meanwhile to icu 2", "meanwhile to ivy", "meanwhile to all",
                          "meanwhile to icu 1", "before the restart"] + before)
    expect_timeline(olga, ["meanwhile to ops", "meanwhile to all"] + before)
    screenshot(ivy, "caught-up-after-restart")

    # and live delivery works again on the new session: the last message shows once
    send(olga, "dept", "after the restart", dept="icu")
    expect_timeline(ivy, ["after the restart", "meanwhile to icu 2", "meanwhile to ivy",
                          "meanwhile to all", "meanwhile to icu 1", "before the restart"] + before)


def test_reload_catches_up(node, open_page, all_log):
    base = base_url(node)
    before = all_log.newest_first()
    page = open_page(base + "#token=" + token("walt", "ward"))
    wait_connected(page)
    send(page, "dept", "seen before leaving")
    expect_timeline(page, ["seen before leaving"] + before)

    page.goto("about:blank")
    send_via_wamp(node.url, token("sam", "ops", "publisher"), [
        ("ward", "while away 1"), ("ward_walt", "while away 2"), ("icu", "not for the ward")])
    page.go_back()  # the tab keeps its token: no new sign-in
    assert page.url == base
    wait_connected(page)
    expect(page.locator("#who")).to_have_text("walt · ward · member")
    expect_timeline(page, ["while away 2", "while away 1", "seen before leaving"] + before)
    page.reload()
    wait_connected(page)
    expect_timeline(page, ["while away 2", "while away 1", "seen before leaving"] + before)

    last = page.evaluate("JSON.parse(localStorage.getItem('deptcast:v1:timeline:ward_walt')).lastId")
    assert last == page.locator("#timeline .msg").first.get_attribute("data-id")


def test_messages_missing_inside_the_timeline_are_filled_in_order(node, open_page, all_log):
    """A previous visit kept m1 and m4 but missed m2 and m3 (as an event relayed late by
    another cluster node can be): the catch-up puts them in their place, each once."""
    base = base_url(node)
    before = all_log.newest_first()
    sent = send_via_wamp(node.url, token("sam", "ops", "publisher"),
                         [("gap", f"m{i}") for i in range(1, 5)])
    page = open_page(base)
    expect(page.locator("#signin-wait")).to_be_visible()
    page.evaluate("c => localStorage.setItem('deptcast:v1:timeline:gap_gus', JSON.stringify(c))",
                  {"lastId": sent[3]["id"], "envelopes": [sent[0], sent[3]]})
    # the host puts the token into the fragment of the page already open
    page.evaluate("t => { location.hash = 'token=' + t; }", token("gus", "gap"))
    wait_connected(page)
    assert "token" not in page.url
    expect_timeline(page, ["m4", "m3", "m2", "m1"] + before)


def test_first_visit_shows_the_newest_page(node, open_page):
    """Nothing cached on this browser: the page asks once for the newest page of history
    (``latest``) instead of paging through it all from the start."""
    page = open_page(base_url(node))
    expect(page.locator("#signin-wait")).to_be_visible()
    page_size = page.evaluate("async () => (await import('./timeline.js')).HISTORY_PAGE")
    messages = [f"deep {i}" for i in range(1, page_size + 6)]
    per_sender = 40  # under the node's burst (50 per sender): no waiting on the rate limit
    for k, start in enumerate(range(0, len(messages), per_sender)):
        send_via_wamp(node.url, token(f"filler{k}", "deep"),
                      [("deep", m) for m in messages[start:start + per_sender]])
    page.evaluate("t => { location.hash = 'token=' + t; }", token("fay", "deep"))
    wait_connected(page)
    # exactly the newest page: not the 5 oldest, nor the older messages to All
    expect_timeline(page, list(reversed(messages[-page_size:])))


def test_a_missed_event_is_read_from_history_without_reconnecting(node, open_page, all_log):
    """One event frame from the node to the page is dropped on the way (as a cluster link
    that drops can lose one): the next event's seq jumps, and the page reads the missed
    message from history, once, on the same connection."""
    before = all_log.newest_first()
    lost = "lost on the way"
    sockets, history_calls, dropped = [], [], []

    def route(ws):
        sockets.append(ws.url)
        server = ws.connect_to_server()

        def from_page(message):
            frame = json.loads(message)  # autobahn-js speaks WAMP over JSON here
            if frame[0] == 48 and frame[3] == "deptcast.history":  # CALL
                history_calls.append(frame[5] if len(frame) > 5 else {})
            server.send(message)

        def from_server(message):
            frame = json.loads(message)
            if frame[0] == 36 and len(frame) > 4 and frame[4][0].get("message") == lost:  # EVENT
                dropped.append(frame[4][0])
                return
            ws.send(message)

        ws.on_message(from_page)
        server.on_message(from_server)

    page = open_page(base_url(node) + "#token=" + token("gil", "gapless"),
                     setup=lambda p: p.route_web_socket(re.compile(r"/ws$"), route))
    wait_connected(page)
    expect_timeline(page, before)
    assert history_calls[0] == {"limit": history_calls[0]["limit"], "latest": True}, history_calls

    sam = token("sam", "ops", "publisher")
    [first] = send_via_wamp(node.url, sam, [("gapless", "before the loss")])
    expect_timeline(page, ["before the loss"] + before)
    missed, after = send_via_wamp(node.url, sam, [("gapless", lost), ("gapless", "after the loss")])
    assert (missed["seq"], after["seq"]) == (first["seq"] + 1, first["seq"] + 2)

    expect_timeline(page, ["after the loss", lost, "before the loss"] + before)
    assert [e["id"] for e in dropped] == [missed["id"]]
    # read from the newest message of the topic before the gap, on the one connection
    assert {"after": first["id"], "limit": history_calls[0]["limit"]} in history_calls, history_calls
    assert len(sockets) == 1
    expect(connection(page)).to_have_attribute("data-state", "connected")


# ---- the timeline's merge rules, run in the browser as the page runs them -------------------

def test_timeline_merge_keeps_each_id_once_sorted(node, open_page):
    page = open_page(base_url(node))
    result = page.evaluate("""async () => {
        const { Timeline } = await import('./timeline.js');
        const env = (id) => ({ id, scope: 'dept', target: 'd', sender: 's', sender_dept: 'd',
                               message: 'm' + id, ts: 0, seq: 7 });
        const t = new Timeline(4);
        const a = t.merge([env('0000000000000003'), env('0000000000000001')]);
        const b = t.merge([env('0000000000000002'), env('0000000000000003'), {id: 5}]);
        const c = t.merge([env('0000000000000004'), env('0000000000000005')]);
        return { a: a.added.map(e => e.id), b: b.added.map(e => e.id), c: c.added.map(e => e.id),
                 dropped: c.dropped, ids: t.ids, last: t.lastId,
                 after: t.catchUpAfter(2), afterShort: new Timeline().catchUpAfter(2),
                 next: t.nextId('0000000000000003') };
    }""")
    assert result == {
        "a": ["0000000000000001", "0000000000000003"],
        "b": ["0000000000000002"],
        "c": ["0000000000000004", "0000000000000005"],
        "dropped": ["0000000000000001"],
        "ids": ["0000000000000002", "0000000000000003", "0000000000000004", "0000000000000005"],
        "last": "0000000000000005",
        "after": "0000000000000003",
        "afterShort": None,
        "next": "0000000000000004",
    }


def test_seq_gaps_are_noticed_per_topic(node, open_page):
    """The pure gap logic: a topic's seq jumping opens a gap, a late event closes it, other
    topics and envelopes without seq are ignored."""
    page = open_page(base_url(node))
    result = page.evaluate("""async () => {
        const { SeqTracker, seqGap, topicOf } = await import('./timeline.js');
        const id = (n) => String(n).padStart(16, '0');
        const env = (n, scope, target, seq) => ({ id: id(n), scope, target, sender: 's',
            sender_dept: 'd', message: 'm' + n, ts: 0, ...(seq === undefined ? {} : { seq }) });
        const d = (n, seq) => env(n, 'dept', 'd', seq);
        const all = (n, seq) => env(n, 'all', 'All', seq);
        const t = new SeqTracker(['deptcast.dept.d', 'deptcast.all', 'deptcast.user.u']);
        const steps = [];
        const step = (envs) => steps.push({ opened: t.observe(envs), gaps: t.gaps(), after: t.gapAfter() });
        step([d(1, 1), all(2, 7)]);          // first seen: nothing known to be missing
        step([d(3, 2), env(4, 'user', 'd_u', 1)]);
        step([d(6, 5)]);                     // 3 and 4 missing
        step([d(4, 3)]);                     // late: closes 3
        step([all(8, 9)]);                   // 8 missing on All too
        step([d(5, 4), env(9, 'dept', 'x', 50), all(10), env(11, 'user', 'd_v', 9)]);
        const highs = t.highs();
        step([all(13, 12)]);                 // 10, 11 missing; opened after the snapshot
        t.settle(highs);                     // history read from before: 8 will not come
        return {
            steps, afterSettle: t.gaps(), hasGaps: t.hasGaps,
            topics: [topicOf(d(1)), topicOf(all(1)), topicOf(env(1, 'user', 'cardio_alice')),
                     topicOf(env(1, 'user', 'nounderscore')), topicOf({ id: 5 })],
            seqGap: [seqGap(3, d(1, 4)), seqGap(3, d(1, 6)), seqGap(null, d(1, 9)), seqGap(3, d(1)),
                     seqGap(5, d(1, 2)), seqGap(3, d(1, 1.5))],
        };
    }""")
    none = {}
    assert result["steps"] == [
        {"opened": False, "gaps": none, "after": None},
        {"opened": False, "gaps": none, "after": None},
        {"opened": True, "gaps": {"deptcast.dept.d": [[3, 4]]}, "after": "0000000000000003"},
        {"opened": False, "gaps": {"deptcast.dept.d": [[4, 4]]}, "after": "0000000000000003"},
        {"opened": True, "gaps": {"deptcast.dept.d": [[4, 4]], "deptcast.all": [[8, 8]]},
         "after": "0000000000000002"},
        {"opened": False, "gaps": {"deptcast.all": [[8, 8]]}, "after": "0000000000000002"},
        {"opened": True, "gaps": {"deptcast.all": [[8, 8], [10, 11]]}, "after": "0000000000000002"},
    ]
    assert result["afterSettle"] == {"deptcast.all": [[10, 11]]}
    assert result["hasGaps"] is True
    assert result["topics"] == ["deptcast.dept.d", "deptcast.all", "deptcast.user.cardio_alice", None, None]
    assert result["seqGap"] == [None, {"from": 4, "to": 5}, None, None, None, None]


def test_page_helpers(node, open_page):
    """Token claims, the WebSocket URL beside the page, the retry delays."""
    page = open_page(base_url(node))
    result = page.evaluate("""async (tok) => {
        const { claimsOf } = await import('./signin.js');
        const { nodeUrl, retryDelay } = await import('./link.js');
        const delays = Array.from({ length: 12 }, (_, i) => retryDelay(i));
        return {
            claims: claimsOf(tok), bad: [claimsOf('x.y'), claimsOf('a.b.c'), claimsOf(null)],
            urls: [nodeUrl('http://127.0.0.1:8080/'), nodeUrl('https://host.example/deptcast/index.html#x'),
                   nodeUrl('http://h:1/?q=1')],
            first: delays[0], last: delays[11],
            growing: delays.slice(0, 6).every((d, i) => i === 0 || d > delays[i - 1] * 0.9),
        };
    }""", token("u.1", "d-2", "publisher"))
    claims = result["claims"]
    assert (claims["sub"], claims["dept"], claims["role"]) == ("u.1", "d-2", "publisher")
    assert result["bad"] == [None, None, None]
    assert result["urls"] == ["ws://127.0.0.1:8080/ws", "wss://host.example/deptcast/ws", "ws://h:1/ws"]
    assert 0.75 <= result["first"] <= 1.25  # 1 s, jittered by a quarter
    assert result["growing"]
    assert 15 <= result["last"] <= 25  # capped at 20 s, jittered
