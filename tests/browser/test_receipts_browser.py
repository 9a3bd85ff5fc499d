"""Receipts in the page, in a real chromium against a real node: two members of a
department, one reads the notice; the sender's page says "seen by 1 of 2" under it and names
the other as not having seen it."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from playwright.sync_api import expect

from tests.browser.test_browser import TIMEOUT_MS, base_url, confirm_sign_in, send, wait_connected
from tests.support.browser import screenshot
from tests.support.nodes import token

DEPTCAST = str(Path(sys.executable).with_name("deptcast"))


def roster_of(node, dept: str, tok: str):
    base = {k: v for k, v in os.environ.items() if not k.startswith("DEPTCAST_")}
    done = subprocess.run([DEPTCAST, "roster", "list", dept, "--json", "--url", node.url], capture_output=True,
                          text=True, timeout=60, env={**base, "DEPTCAST_TOKEN": tok})
    assert done.returncode == 0, done.stderr
    return sorted(u["user"] for u in json.loads(done.stdout)["users"])


def test_the_senders_page_shows_who_has_seen_a_notice(node, open_page):
    dept = f"ward-{os.urandom(3).hex()}"
    base = base_url(node)
    # bob signs in once, and is away when the notice comes
    bob = open_page(base + "#token=" + token("bob", dept))
    confirm_sign_in(bob)
    wait_connected(bob)
    bob.close()
    ann = open_page(base + "#token=" + token("ann", dept))
    confirm_sign_in(ann)
    wait_connected(ann)
    pat_token = token("pat", dept, "publisher")
    deadline = time.monotonic() + 30
    while roster_of(node, dept, pat_token) != ["ann", "bob"]:
        assert time.monotonic() < deadline, "ann and bob on the roster"
        time.sleep(0.3)
    pat = open_page(base + "#token=" + pat_token)
    confirm_sign_in(pat)
    wait_connected(pat)
    send(pat, "dept", "new ward protocol from monday", dept=dept)

    # ann's page shows it, in a focused tab, for more than a second: seen
    ann.bring_to_front()
    expect(ann.locator("#timeline .msg .text").first).to_have_text("new ward protocol from monday")
    mine = pat.locator("#timeline .msg").first
    expect(mine.locator(".receipt-line")).to_have_text("seen by 1 of 2 · delivered to 1", timeout=TIMEOUT_MS * 2)
    who = mine.locator(".receipt-who")
    expect(who).to_be_visible()
    who.locator("summary").click()
    expect(who.locator(".who-pending .who-list li")).to_have_text(["bob"])
    expect(who.locator(".who-delivered .who-list li")).to_have_text(["nobody"])
    assert re.search(r"\bann\b", who.inner_text()) is None
    screenshot(pat, "receipts-sender")
