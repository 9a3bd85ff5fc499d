"""The browser client (``web/``) in a real headless chromium against a real node.

One node for the module (restarted once, in the restart test) and a second one in
quick-start mode for the dev sign-in form. Every test signs in users of its own, but
messages to ``All`` reach every user: :class:`AllLog` keeps those, so a test expects exactly
its own messages plus the ``All`` messages sent before it.

The pure modules of the page (timeline, catch-up, link, sign-in, presence) have node unit
tests in ``tests/browser/js/``; these tests cover what needs a page and a node. Screenshots of
the main states go to ``test-artifacts/screenshots/``.
"""

import json
import re
import time
from typing import List

import pytest
from playwright.sync_api import Page, expect

from components.core.tokens import issue_token
from components.edge.static import page_policy
from tests.support.browser import host_app, screenshot, send_via_wamp
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
def dev_node(tmp_path_factory):
    """A node in quick-start mode: only the dev sign-in form test uses it."""
    n = Node(tmp_path_factory.mktemp("devnode"), name="dev", env={"DEPTCAST_DEV": "1"})
    n.start()
    yield n
    n.stop()


def base_url(node: Node) -> str:
    return f"http://127.0.0.1:{node.port}/"


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


def confirm_sign_in(page: Page) -> None:
    """The page was given a token in its address that it did not ask for (a link from any site
    could carry someone else's): it asks before signing in, and the user says yes."""
    expect(page.locator("#confirm-question")).to_have_text(re.compile(r"^Sign in as .+ \(.+\)\?$"))
    page.click("#confirm-yes")


def expect_timeline(page: Page, newest_first: List[str], scopes: List[str] = None) -> None:
    """The timeline shows exactly these messages, newest first, each once."""
    expect(texts(page)).to_have_text(newest_first)
    if scopes is not None:
        assert [li.get_attribute("data-scope") for li in page.locator("#timeline .msg").all()] == scopes
    ids = [li.get_attribute("data-id") for li in page.locator("#timeline .msg").all()]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids), ids


def record_messages_shown(page: Page) -> None:
    """Before the page loads: record every message the timeline ever shows (``window.messagesShown``)."""
    page.add_init_script("""
        window.messagesShown = [];
        new MutationObserver((changes) => {
            for (const change of changes) for (const node of change.addedNodes)
                if (node.classList && node.classList.contains('msg'))
                    window.messagesShown.push(node.querySelector('.text').textContent);
        }).observe(document, { childList: true, subtree: true });
    """)


def cache_of(page: Page, dept: str, user: str, version: int = 2):
    """The page's cache of one user (parsed), or None."""
    raw = page.evaluate("k => localStorage.getItem(k)", f"deptcast:v{version}:timeline:{dept}_{user}")
    return None if raw is None else json.loads(raw)


def plant_cache(page: Page, dept: str, user: str, envelopes, positions, legacy_too: bool = False) -> None:
    """Put a user's cache into the page's storage, as an earlier visit on this computer left it."""
    page.evaluate("([k, v]) => localStorage.setItem(k, JSON.stringify(v))",
                  [f"deptcast:v2:timeline:{dept}_{user}", {"positions": positions, "envelopes": envelopes}])
    if legacy_too:
        page.evaluate("([k, v]) => localStorage.setItem(k, JSON.stringify(v))",
                      [f"deptcast:v1:timeline:{dept}_{user}", {"envelopes": envelopes}])


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


def test_a_host_of_an_allowed_origin_embeds_the_page_and_posts_the_token(node, browser, all_log):
    """A host application on another origin embeds the page and posts the token: it works
    once index.html's meta tag lists that origin (the operator's setting), which also lets
    that origin frame the page (the node's frame-ancestors header)."""
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
            # the operator's edit of index.html, listing the host application's origin, and the
            # header the node derives from the edited file (components/edge/static.py)
            answer = route.fetch()
            body = answer.text().replace('name="deptcast-token-origins" content=""',
                                         f'name="deptcast-token-origins" content="{host}"')
            assert host in body
            policy, rejected = page_policy(body)
            assert policy.endswith(f"frame-ancestors 'self' {host}") and not rejected
            route.fulfill(response=answer, body=body,
                          headers={**answer.headers, "content-security-policy": policy})

        # the edited index.html comes from Playwright, not from a loopback address: chromium
        # then wants the user's leave for the page to reach the node
        context = browser.new_context(permissions=["local-network-access"])
        try:
            context.route(page_url, allow_host)
            page = context.new_page()
            page.on("console", lambda m: m.type == "error" and print(f"[console {m.type}] {m.text}"))
            page.goto(f"{host}/host.html")
            frame = page.frame_locator("#deptcast")
            expect(page).to_have_title("host got deptcast.ready")
            expect(frame.locator("#conn")).to_have_attribute("data-state", "connected")
            expect(frame.locator("#who")).to_have_text("hank · host-dept · member")
            expect(frame.locator("#timeline .msg .text")).to_have_text(expected)
            screenshot(page, "embedded-in-host")
        finally:
            context.close()


def test_a_foreign_origin_can_neither_frame_the_page_nor_post_it_a_token(node, browser):
    """Not listed in index.html: a frame of the page is refused by chromium (the node's
    frame-ancestors header), and a token the foreign page posts to a window it opened is
    ignored; the page never tells that origin it is ready."""
    page_url = base_url(node)
    with host_app('<!doctype html><title>host</title><iframe id="deptcast" title="deptcast"></iframe>') as host:
        context = browser.new_context()
        try:
            page = context.new_page()
            page.goto(f"{host}/host.html")
            with page.expect_console_message(lambda m: "frame-ancestors" in m.text) as refused:
                page.evaluate("url => { document.getElementById('deptcast').src = url; }", page_url)
            assert refused.value.text.strip() == (f"Framing '{page_url}' violates the following Content Security "
                                                  "Policy directive: \"frame-ancestors 'self'\". "
                                                  "The request has been blocked.")
            expect(page.frame_locator("#deptcast").locator("#conn")).to_have_count(0)  # nothing of it rendered

            heard = []
            page.expose_function("heard", lambda data: heard.append(data))
            page.evaluate("() => addEventListener('message', (e) => window.heard(e.data))")
            with page.expect_popup() as popup_info:
                page.evaluate("url => { window.deptcast = window.open(url); }", page_url)
            popup = popup_info.value
            # the page is up and waits for its host (it tells allowed origins only)
            expect(popup.locator("#signin")).to_have_attribute("data-offer", "host")
            with popup.expect_console_message(lambda m: "ignored a token posted by" in m.text) as ignored:
                page.evaluate("t => window.deptcast.postMessage({type: 'deptcast.token', token: t}, '*')",
                              token("hank", "host-dept"))
            assert ignored.value.text == f"deptcast: ignored a token posted by {host}: not an allowed origin"
            expect(popup.locator("#conn")).to_have_text("Not signed in")
            assert heard == []  # "deptcast.ready" goes to allowed origins only
        finally:
            context.close()


def test_expired_token_goes_offline_until_the_host_sends_a_new_one(node, open_page, all_log):
    """An expired token: offline, and the user's cached timeline stays on this computer but is
    not shown until the node accepts a renewed token for that user."""
    sent = send_via_wamp(node.url, token("sam", "ops", "publisher"),
                         [("exp-dept", "cached 1"), ("exp-dept", "cached 2")])
    page = open_page(base_url(node), setup=record_messages_shown)
    expect(page.locator("#signin")).to_have_attribute("data-offer", "host")  # up, waiting for its host
    plant_cache(page, "exp-dept", "exa", sent, {"deptcast.dept.exp-dept": sent[1]["seq"]})
    expired = issue_token(TEST_SECRET, "exa", "exp-dept", "member", ttl=60, now=time.time() - 3600)
    page.evaluate("t => { location.hash = 'token=' + t; }", expired)
    confirm_sign_in(page)
    expect(connection(page)).to_have_attribute("data-state", "offline")
    expect(connection(page)).to_have_text("Offline: your sign-in has expired")
    expect(page.locator("#who")).to_have_text("exa · exp-dept · member")
    assert page.evaluate("window.messagesShown") == []
    assert cache_of(page, "exp-dept", "exa") is not None  # merely expired: kept
    # the host renews the token: the page connects with it, no reload, and shows the cache
    page.evaluate("t => window.postMessage({type: 'deptcast.token', token: t}, location.origin)",
                  token("exa", "exp-dept"))
    wait_connected(page)
    expect_timeline(page, ["cached 2", "cached 1"] + all_log.newest_first())


def test_a_forged_token_never_shows_the_cache_and_a_refused_one_drops_it(node, open_page):
    """On a shared computer: anyone can write a token with another user's claims. The page shows
    that user's cached timeline only once the node accepts the token, and when the node refuses
    it as invalid the cache is dropped; the page does not keep the refused token either."""
    sent = send_via_wamp(node.url, token("sam", "ops", "publisher"), [("ward9", "private notice")])
    page = open_page(base_url(node), setup=record_messages_shown)
    expect(page.locator("#signin")).to_have_attribute("data-offer", "host")  # up, waiting for its host
    plant_cache(page, "ward9", "vic", sent, {"deptcast.dept.ward9": sent[0]["seq"]}, legacy_too=True)
    forged = issue_token("not-the-node-secret-" + "z" * 40, "vic", "ward9", "member")
    page.evaluate("t => { location.hash = 'token=' + t; }", forged)
    confirm_sign_in(page)
    expect(connection(page)).to_have_text("Offline: sign-in refused (deptcast.error.invalid_token)")
    expect(page.locator("#who")).to_have_text("vic · ward9 · member")
    assert page.evaluate("window.messagesShown") == []
    assert cache_of(page, "ward9", "vic") is None and cache_of(page, "ward9", "vic", 1) is None
    assert page.evaluate("sessionStorage.getItem('deptcast:token')") is None
    expect(page.locator("#timeline-empty")).to_be_visible()
    screenshot(page, "forged-token-refused")


def test_a_fragment_token_while_signed_in_obeys_the_origin_rule(node, browser):
    """Once signed in, a token in the fragment is used only if whoever set the address is of an
    allowed origin: the user in a tab of its own may switch, a foreign page that opened the tab
    may not (it could otherwise sign the user in as someone of its choosing)."""
    page_url = base_url(node)
    with host_app("<!doctype html><title>opener</title>") as host:
        context = browser.new_context()
        try:
            opener = context.new_page()
            opener.goto(f"{host}/host.html")
            with opener.expect_popup() as popup_info:
                opener.evaluate("url => { window.deptcast = window.open(url); }",
                                page_url + "#token=" + token("olive", "frag"))
            popup = popup_info.value
            # not signed in yet, and opened by an origin that is not allowed: asks the user first
            confirm_sign_in(popup)
            wait_connected(popup)
            expect(popup.locator("#who")).to_have_text("olive · frag · member")
            with popup.expect_console_message(lambda m: "ignored a token in the address" in m.text):
                opener.evaluate("url => { window.deptcast.location = url; }",
                                page_url + "#token=" + token("mallory", "frag"))
            expect(popup.locator("#who")).to_have_text("olive · frag · member")
            assert "token" not in popup.url
            expect(connection(popup)).to_have_attribute("data-state", "connected")

            own = context.new_page()  # a tab of its own: only its user sets the address
            own.goto(page_url + "#token=" + token("olive", "frag"))
            confirm_sign_in(own)
            wait_connected(own)
            own.evaluate("t => { location.hash = 'token=' + t; }", token("oscar", "frag"))
            expect(own.locator("#who")).to_have_text("oscar · frag · member")
            wait_connected(own)
        finally:
            context.close()


def test_a_token_the_page_did_not_ask_for_is_used_only_with_the_users_yes(node, open_page):
    """Login CSRF: a link from any site can carry someone else's token. The page asks; Cancel
    leaves it signed out. A token that answers this tab's own sign-in request (the nonce it
    stored before sending the user to the issuer) is used without asking."""
    page = open_page(base_url(node) + "#token=" + token("mallory", "csrf"))
    expect(page.locator("#confirm-question")).to_have_text("Sign in as mallory (csrf)?")
    expect(page.locator("#confirm-yes")).to_be_focused()
    expect(page.locator("#app")).to_be_hidden()
    assert "token" not in page.url
    screenshot(page, "signin-confirm")
    page.click("#confirm-no")
    expect(page.locator("#signin")).to_have_attribute("data-offer", "host")
    expect(page.locator("#confirm")).to_be_hidden()
    expect(connection(page)).to_have_text("Not signed in")
    assert page.evaluate("sessionStorage.getItem('deptcast:token')") is None

    # the issuer sends the user back with the state of the request this tab made
    page.evaluate("() => sessionStorage.setItem('deptcast:signin-request', 'n-1')")
    page.evaluate("t => { location.hash = 'token=' + t + '&state=n-1'; }", token("carl", "csrf"))
    wait_connected(page)
    expect(page.locator("#who")).to_have_text("carl · csrf · member")
    expect(page.locator("#confirm")).to_be_hidden()
    assert "state" not in page.url and "token" not in page.url
    assert page.evaluate("sessionStorage.getItem('deptcast:signin-request')") is None, "a request serves once"


def test_the_page_is_served_with_its_security_headers(node):
    import urllib.error
    import urllib.request
    with urllib.request.urlopen(base_url(node), timeout=10) as r:
        assert r.headers["content-security-policy"] == (
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
            "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'self'")
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["cache-control"] == "max-age=60, public"
    for path in ("package.json", "bundle.mjs", "__init__.py", "node_modules/autobahn/package.json", "vendor/"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(base_url(node) + path, timeout=10)
        assert refused.value.code == 404, path


def test_connect_src_self_allows_the_node_and_nothing_else(node, open_page):
    """``connect-src 'self'`` covers ws: to the page's own host and port in chromium (the page
    connects under it, in every test here), and refuses a WebSocket anywhere else."""
    page = open_page(base_url(node) + "#token=" + token("cora", "csp"))
    confirm_sign_in(page)
    wait_connected(page)
    result = page.evaluate("""async (port) => {
        const violations = [];
        document.addEventListener('securitypolicyviolation',
            (e) => violations.push([e.effectiveDirective, e.blockedURI]));
        const attempt = (url) => new Promise((resolve) => {
            let ws;
            try { ws = new WebSocket(url, ['wamp.2.json']); } catch (e) { resolve('threw ' + e.name); return; }
            ws.onopen = () => { ws.close(); resolve('open'); };
            ws.onerror = () => resolve('error');
        });
        const own = await attempt(`ws://127.0.0.1:${port}/ws`);
        const other = await attempt(`ws://127.0.0.1:${port + 1}/ws`);
        const otherHost = await attempt(`ws://localhost:${port}/ws`);
        await new Promise((r) => setTimeout(r, 100));  // violation events are queued as tasks
        return { own, other, otherHost, violations };
    }""", node.port)
    assert result["own"] == "open"
    assert result["other"] != "open" and result["otherHost"] != "open"
    # (chromium reports each refusal more than once)
    assert sorted(set(map(tuple, result["violations"]))) == [("connect-src", f"ws://127.0.0.1:{node.port + 1}/ws"),
                                                             ("connect-src", f"ws://localhost:{node.port}/ws")]


# ---- the timeline: who sees what --------------------------------------------------------------

def test_each_user_sees_exactly_their_messages(node, open_page, all_log):
    base = base_url(node)
    before = all_log.newest_first()
    alice = open_page(base + "#token=" + token("alice", "cardio"))
    confirm_sign_in(alice)
    bob = open_page(base + "#token=" + token("bob", "radio"))
    confirm_sign_in(bob)
    # the publisher's host posts the token from the page's own origin
    pat = open_page(base)
    expect(pat.locator("#signin")).to_have_attribute("data-offer", "host")  # up, waiting for its host
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

    # each sees what it was sent, and what it sent (to others too: deptcast.send's envelope)
    expect_timeline(alice, ["final marker", "alice to carol", "alice to cardio", "pat to alice", "pat to all",
                            "pat to cardio"] + before,
                    ["all", "user", "dept", "user", "all", "dept"] + ["all"] * len(before))
    expect_timeline(bob, ["final marker", "bob to dan", "bob to radio", "pat to bob", "pat to all",
                          "pat to radio"] + before)
    expect_timeline(pat, ["final marker", "pat to bob", "pat to alice", "pat to all", "pat to radio",
                          "pat to cardio"] + before)
    labels = [(li.locator(".scope").text_content(), li.locator(".from").text_content())
              for li in alice.locator("#timeline .msg").all()[1:4]]
    assert labels == [("Direct to carol (cardio)", "from alice (cardio)"), ("Dept cardio", "from alice (cardio)"),
                      ("Direct to you", "from pat (hq)")]
    assert [li.text_content() for li in pat.locator("#timeline .msg .scope").all()[1:6]] == [
        "Direct to bob (radio)", "Direct to alice (cardio)", "All", "Dept radio", "Dept cardio"]
    screenshot(alice, "timeline-member")
    screenshot(pat, "timeline-publisher")

    # the same page on a phone-sized screen, another browser: from history, which holds what
    # was sent to alice (a message she sent to carol stays in the page and cache that sent it)
    phone = open_page(base + "#token=" + token("alice", "cardio"), viewport={"width": 390, "height": 844})
    confirm_sign_in(phone)
    wait_connected(phone)
    expect_timeline(phone, ["final marker", "alice to cardio", "pat to alice", "pat to all",
                            "pat to cardio"] + before)
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(phone, "timeline-phone")


def test_online_panel_shows_exactly_the_users_online(node, open_page):
    """The Online panel lists the department's users from deptcast.presence.online, then
    follows the deptcast.presence.<dept> events (the page has no periodic refresh)."""
    base, dept = base_url(node), "presb"
    soon = 10_000

    def panel(page: Page):
        return page.get_by_role("complementary", name="Online")

    alice = open_page(base + "#token=" + token("alice-p", dept))
    confirm_sign_in(alice)
    wait_connected(alice)
    expect(panel(alice).get_by_role("listitem")).to_have_text(["alice-p"])
    expect(alice.locator("#online-note")).to_have_text(f"1 online in {dept}")
    # bob on two pages counts once; dan of another department is not listed
    bob1 = open_page(base + "#token=" + token("bob-p", dept))
    confirm_sign_in(bob1)
    bob2 = open_page(base + "#token=" + token("bob-p", dept))
    confirm_sign_in(bob2)
    dan = open_page(base + "#token=" + token("dan-p", "presc"))
    confirm_sign_in(dan)
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
    confirm_sign_in(carol)
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
    confirm_sign_in(page)
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
    confirm_sign_in(ivy)
    olga = open_page(base + "#token=" + token("olga", "ops", "publisher"))
    confirm_sign_in(olga)
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
    expect_timeline(olga, ["meanwhile to ops", "meanwhile to all", "before the restart"] + before)
    screenshot(ivy, "caught-up-after-restart")

    # and live delivery works again on the new session: the last message shows once
    send(olga, "dept", "after the restart", dept="icu")
    expect_timeline(ivy, ["after the restart", "meanwhile to icu 2", "meanwhile to ivy",
                          "meanwhile to all", "meanwhile to icu 1", "before the restart"] + before)


def test_reload_catches_up(node, open_page, all_log):
    base = base_url(node)
    before = all_log.newest_first()
    page = open_page(base + "#token=" + token("walt", "ward"))
    confirm_sign_in(page)
    wait_connected(page)
    send(page, "dept", "seen before leaving")
    expect_timeline(page, ["seen before leaving"] + before)

    page.goto("about:blank")
    away = send_via_wamp(node.url, token("sam", "ops", "publisher"), [
        ("ward", "while away 1"), ("ward_walt", "while away 2"), ("icu", "not for the ward")])
    page.go_back()  # the tab keeps its token: no new sign-in
    assert page.url == base
    wait_connected(page)
    expect(page.locator("#who")).to_have_text("walt · ward · member")
    expect_timeline(page, ["while away 2", "while away 1", "seen before leaving"] + before)
    page.reload()
    wait_connected(page)
    expect_timeline(page, ["while away 2", "while away 1", "seen before leaving"] + before)

    cache = cache_of(page, "ward", "walt")
    assert cache["envelopes"][-1]["id"] == page.locator("#timeline .msg").first.get_attribute("data-id")
    # where the next visit resumes: the last seq of each topic
    assert cache["positions"]["deptcast.dept.ward"] == away[0]["seq"]
    assert cache["positions"]["deptcast.user.ward_walt"] == away[1]["seq"] == 1


def test_messages_missing_inside_the_timeline_are_filled_in_order(node, open_page, all_log):
    """A cache of the page before positions were stored kept m1 and m4 but missed m2 and m3 (as
    an event relayed late by another cluster node could leave it): the page resumes after m1,
    the end of the unbroken run, puts them in their place, each once, and stores positions."""
    base = base_url(node)
    before = all_log.newest_first()
    sent = send_via_wamp(node.url, token("sam", "ops", "publisher"),
                         [("gap", f"m{i}") for i in range(1, 5)])
    page = open_page(base)
    expect(page.locator("#signin")).to_have_attribute("data-offer", "host")  # up, waiting for its host
    page.evaluate("c => localStorage.setItem('deptcast:v1:timeline:gap_gus', JSON.stringify(c))",
                  {"lastId": sent[3]["id"], "envelopes": [sent[0], sent[3]]})
    # the host puts the token into the fragment of the page already open
    page.evaluate("t => { location.hash = 'token=' + t; }", token("gus", "gap"))
    confirm_sign_in(page)
    wait_connected(page)
    assert "token" not in page.url
    expect_timeline(page, ["m4", "m3", "m2", "m1"] + before)
    page.evaluate("() => dispatchEvent(new Event('pagehide'))")  # saves now
    assert cache_of(page, "gap", "gus", 1) is None
    assert cache_of(page, "gap", "gus")["positions"]["deptcast.dept.gap"] == sent[3]["seq"]


def test_first_visit_shows_the_newest_page(node, open_page, all_log):
    """Nothing cached on this browser: the page asks once for the newest page of history
    (``latest``) instead of paging through a busy department from the start; a topic absent
    from that page (here All) is then read by position from its start."""
    page = open_page(base_url(node))
    expect(page.locator("#signin")).to_have_attribute("data-offer", "host")  # up, waiting for its host
    page_size = page.evaluate("async () => (await import('./catchup.js')).HISTORY_PAGE")
    messages = [f"deep {i}" for i in range(1, page_size + 6)]
    per_sender = 40  # under the node's burst (50 per sender): no waiting on the rate limit
    for k, start in enumerate(range(0, len(messages), per_sender)):
        send_via_wamp(node.url, token(f"filler{k}", "deep"),
                      [("deep", m) for m in messages[start:start + per_sender]])
    page.evaluate("t => { location.hash = 'token=' + t; }", token("fay", "deep"))
    confirm_sign_in(page)
    wait_connected(page)
    # exactly the newest page of the department (not its 5 oldest), and the messages to All
    expect_timeline(page, list(reversed(messages[-page_size:])) + all_log.newest_first())


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
    confirm_sign_in(page)
    wait_connected(page)
    expect_timeline(page, before)
    assert history_calls[0] == {"limit": history_calls[0]["limit"], "latest": True}, history_calls
    assert [sorted(c["positions"]) for c in history_calls[1:]] == [
        ["deptcast.all", "deptcast.dept.gapless", "deptcast.user.gapless_gil"]] * (len(history_calls) - 1)

    sam = token("sam", "ops", "publisher")
    [first] = send_via_wamp(node.url, sam, [("gapless", "before the loss")])
    expect_timeline(page, ["before the loss"] + before)
    missed, after = send_via_wamp(node.url, sam, [("gapless", lost), ("gapless", "after the loss")])
    assert (missed["seq"], after["seq"]) == (first["seq"] + 1, first["seq"] + 2)

    expect_timeline(page, ["after the loss", lost, "before the loss"] + before)
    assert [e["id"] for e in dropped] == [missed["id"]]
    # read by position on that topic only, once (the answer reaches the held event that follows
    # the hole: nothing more to ask), on the one connection
    limit = history_calls[0]["limit"]
    gap_reads = [c for c in history_calls if set(c.get("positions", {})) == {"deptcast.dept.gapless"}]
    assert gap_reads == [{"positions": {"deptcast.dept.gapless": first["seq"]}, "limit": limit}]
    assert history_calls[-1] == gap_reads[0]
    assert len(sockets) == 1
    expect(connection(page)).to_have_attribute("data-state", "connected")
