"""The operators' commands (``components.ops.admincli``) without a node: their admin token
(given, or minted with the node directory's secret), the roster import in chunks, the roster
listing, and bad input answered with a message."""

import pytest
from twisted.internet import defer

from components.client import errors
from components.core import names
from components.core.tokens import issue_token, verify_token
from components.ops.admincli import ADMIN_DEPT, ADMIN_USER, admin_token, format_roster, import_rows
from components.ops.cli import build_parser

SECRET = "a" * 40


def _admin_tokens_minted() -> bool:
    """Whether core's tokens take the admin role (the contract's; core is another area's work)."""
    try:
        issue_token(SECRET, "op", "ops", "admin")
    except ValueError:
        return False
    return True


def args_of(*argv):
    return build_parser().parse_args(["revoke", "cardio_bob", *argv])


def test_a_given_token_is_used_as_it_is(tmp_path):
    assert admin_token(args_of(), {"DEPTCAST_TOKEN": "a.b.c", "DEPTCAST_JWT_SECRET": SECRET}) == "a.b.c"
    (tmp_path / "t").write_text("f.i.le")
    assert admin_token(args_of("--token-file", str(tmp_path / "t")), {"DEPTCAST_JWT_SECRET": SECRET})() == "f.i.le"


def test_without_a_token_or_a_secret_it_says_both_ways(tmp_path):
    says = r"no admin token: give --token-file PATH or DEPTCAST_TOKEN, or mint one with the node's secret \(no JWT"
    with pytest.raises(ValueError, match=says):
        admin_token(args_of("--node-dir", str(tmp_path)), {})


@pytest.mark.skipif(not _admin_tokens_minted(), reason="core's tokens do not take the admin role yet")
def test_an_admin_token_is_minted_with_the_node_directorys_secret_at_every_ask(tmp_path):
    (tmp_path / "jwt.secret").write_text(SECRET)
    mint = admin_token(args_of("--node-dir", str(tmp_path)), {})
    identity = verify_token(SECRET, mint())
    assert (identity.user, identity.dept, identity.role) == (ADMIN_USER, ADMIN_DEPT, "admin")


class Roster:
    """The node's roster procedures, as a client's engine calls them."""

    def __init__(self, answer=None):
        self.calls = []
        self.known = set()
        self.answer = answer

    @property
    def engine(self):
        return self

    async def call(self, procedure, rows):
        self.calls.append((procedure, rows))
        if self.answer is not None:
            return self.answer
        new = {tuple(r) for r in rows} - self.known
        self.known |= new
        return {"added": len(new), "known": len(rows) - len(new)}


def test_an_import_goes_in_chunks_with_progress_and_a_summary(capsys):
    node = Roster()
    node.known = {("cardio", "p1")}
    rows = [("cardio", f"p{i}") for i in range(5)]
    assert defer.ensureDeferred(import_rows(node, rows, chunk=2)).result == 0
    assert [(p, len(r)) for p, r in node.calls] == [(names.PROC_ADMIN_ROSTER_IMPORT, 2)] * 2 + [
        (names.PROC_ADMIN_ROSTER_IMPORT, 1)]
    assert node.calls[0][1] == [["cardio", "p0"], ["cardio", "p1"]]
    out = capsys.readouterr()
    assert out.out == "5 people: 4 added to the roster, 1 on it already\n"
    assert out.err.splitlines() == [f"deptcast roster import: {n} of 5 done" for n in (2, 4, 5)]


def test_an_answer_the_contract_does_not_name_is_an_error():
    d = defer.ensureDeferred(import_rows(Roster(answer={"added": "lots"}), [("cardio", "bob")]))
    assert isinstance(d.result.value, errors.DeptcastError) and d.result.value.uri == "deptcast.client.protocol"
    d.addErrback(lambda f: None)


def test_the_roster_as_people_read_it():
    text = format_roster({"dept": "cardio", "users": [
        {"user": "bob", "first_seen": 1767225600000, "last_seen": 1767229200000, "source": "signed-in"},
        {"user": "ann\x1b", "first_seen": None, "last_seen": None, "source": "imported"}]})
    lines = text.splitlines()
    assert lines[0] == "cardio: 2 on the roster"
    assert lines[1].startswith("  bob ") and "signed-in" in lines[1] and "first seen 20" in lines[1]
    assert lines[2].startswith("  ann\\x1b ") and lines[2].endswith("first seen -, last seen -")
