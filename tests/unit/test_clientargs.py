"""What the commands that talk to a node share (``components.ops.clientargs``): node URLs, and
tokens from a file (read again at every sign-in and renewal), the command line (with a warning),
the node's secret, or DEPTCAST_TOKEN."""

import os

import pytest

from components.core.tokens import verify_token
from components.ops.cli import build_parser
from components.ops.clientargs import TokenFile, token_source

SECRET = "s" * 40


def args_of(*argv):
    return build_parser().parse_args(["listen", *argv])


def test_token_from_flag_environment_or_minted_on_every_connect(tmp_path):
    warned = []
    assert token_source(args_of("--token", "a.b.c"), {"DEPTCAST_TOKEN": "x.y.z"}, warned.append) == "a.b.c"
    assert len(warned) == 1 and "other local users can read it" in warned[0]
    assert token_source(args_of(), {"DEPTCAST_TOKEN": " x.y.z\n"}, warned.append) == "x.y.z"
    mint = token_source(args_of("--user", "alice", "--dept", "cardio", "--role", "publisher"),
                        {"DEPTCAST_JWT_SECRET": SECRET, "DEPTCAST_TOKEN": "x.y.z"})
    identity = verify_token(SECRET, mint())
    assert (identity.user, identity.dept, identity.role) == ("alice", "cardio", "publisher")
    (tmp_path / "jwt.secret").write_text("t" * 40)
    mint = token_source(args_of("--user", "bob", "--dept", "onco", "--node-dir", str(tmp_path)), {})
    assert verify_token("t" * 40, mint()).user == "bob"
    assert len(warned) == 1


def test_a_token_file_is_read_again_at_every_ask(tmp_path):
    path = tmp_path / "token"
    path.write_text("first.token.x\n")
    path.chmod(0o600)
    warned = []
    source = token_source(args_of("--token-file", str(path)), {"DEPTCAST_TOKEN": "env.token.x"}, warned.append)
    assert callable(source) and source() == "first.token.x"
    path.write_text("second.token.x")
    assert source() == "second.token.x"
    path.unlink()                            # being replaced, say: the token read last serves meanwhile
    assert source() == "second.token.x"
    assert warned == [f"cannot read the token file {path} (No such file or directory); going on with the token read "
                      f"before"]


def test_a_token_file_others_may_read_is_warned_about(tmp_path):
    path = tmp_path / "token"
    path.write_text("a.b.c")
    path.chmod(0o644)
    warned = []
    source = TokenFile(path, warned.append)
    source()
    source()
    assert warned == [f"warning: other users may read the token file {path} (chmod 600 it)"]


@pytest.mark.parametrize("content, says", [
    (None, "cannot read the token file"), ("", "holds no token"), ("a b", "does not hold a JWT"),
    ("x" * 9000, "does not hold a JWT"), ("\xff", "does not hold a JWT")])
def test_a_bad_token_file_is_explained_at_start(tmp_path, content, says):
    path = tmp_path / "token"
    if content is not None:
        path.write_bytes(content.encode("latin-1"))
    with pytest.raises(ValueError, match=says):
        token_source(args_of("--token-file", str(path)), {})


@pytest.mark.parametrize("argv, env, message", [
    ((), {}, "no token"),
    (("--token", "a.b.c", "--user", "x", "--dept", "y"), {}, "not both"),
    (("--token-file", "f", "--user", "x", "--dept", "y"), {}, "not both"),
    (("--token", "a.b.c", "--token-file", "f"), {}, "not both"),
    (("--user", "alice"), {"DEPTCAST_JWT_SECRET": SECRET}, "go together"),
    (("--user", "al_ice", "--dept", "cardio"), {"DEPTCAST_JWT_SECRET": SECRET}, "invalid user id"),
    (("--token", "has space"), {}, "does not hold a JWT"),
    (("--token", "x" * 9000), {}, "does not hold a JWT"),
])
def test_token_mistakes_are_explained(argv, env, message):
    with pytest.raises(ValueError, match=message):
        token_source(args_of(*argv), env, lambda text: None)


def test_the_token_file_is_never_written(tmp_path):
    path = tmp_path / "token"
    path.write_text("a.b.c")
    before = os.stat(path)
    token_source(args_of("--token-file", str(path)), {})()
    assert os.stat(path).st_mtime_ns == before.st_mtime_ns
