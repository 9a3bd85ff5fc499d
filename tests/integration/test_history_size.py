"""History answers on a real node with the default limits: an answer is one WAMP message, and
the router refuses to send one over /ws's cap (6 x the message limit + 64 KiB); the node pages
large messages so that every answer fits."""

import pytest_twisted

from tests.support.nodes import token
from tests.support.wamp import connect

TEXT = "x" * 60_000  # under the default message limit (64 KiB); 8 of them are ~480 KB


@pytest_twisted.inlineCallbacks
def test_large_messages_come_back_page_by_page_and_every_page_fits(node):
    pat = yield connect(node.url, token("pat", "big-admin", "publisher"))
    reader = yield connect(node.url, token("ann", "big"))
    sent = []
    for i in range(8):
        env = yield pat.call("deptcast.send", "big", f"{i}{TEXT}")
        sent.append(env["id"])
    got, pages, after = [], 0, None
    while True:
        page = yield reader.call("deptcast.history", after, 200)   # asks for all: the node bounds it
        if not page:
            break
        pages += 1
        got += [e["id"] for e in page]
        after = page[-1]["id"]
    assert got == sent
    assert pages >= 2  # ~480 KB of messages did not fit in one answer
    for c in (pat, reader):
        yield c.close()
