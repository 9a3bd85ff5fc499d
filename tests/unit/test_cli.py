"""The ``deptcast`` command line, run as a user runs it."""

import argparse
import subprocess
import sys
from pathlib import Path

from components.core.tokens import verify_token
from components.ops.cli import build_parser

DEPTCAST = str(Path(sys.executable).with_name("deptcast"))
SECRET = "c" * 40


def run(*args, env=None, cwd=None):
    return subprocess.run([DEPTCAST, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=60)


def test_token_with_environment_secret(tmp_path):
    out = run("token", "--user", "alice", "--dept", "cardio", "--role", "publisher", "--ttl", "60",
              env={"DEPTCAST_JWT_SECRET": SECRET, "PATH": ""})
    assert out.returncode == 0, out.stderr
    identity = verify_token(SECRET, out.stdout.strip())
    assert (identity.user, identity.dept, identity.role) == ("alice", "cardio", "publisher")


def test_token_with_node_directory_secret(tmp_path):
    (tmp_path / "jwt.secret").write_text("d" * 40 + "\n")
    out = run("token", "--user", "bob", "--dept", "ortho", "--cbdir", str(tmp_path), env={"PATH": ""})
    assert out.returncode == 0, out.stderr
    assert verify_token("d" * 40, out.stdout.strip()).role == "member"


def test_token_without_secret_explains(tmp_path):
    out = run("token", "--user", "bob", "--dept", "ortho", "--cbdir", str(tmp_path), env={"PATH": ""})
    assert out.returncode == 2 and "DEPTCAST_JWT_SECRET" in out.stderr and not out.stdout


def test_token_bad_department(tmp_path):
    out = run("token", "--user", "bob", "--dept", "or_tho", env={"DEPTCAST_JWT_SECRET": SECRET, "PATH": ""})
    assert out.returncode == 2 and "department code" in out.stderr


def test_the_parser_has_every_command():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert list(sub.choices) == ["token", "node-config", "cluster", "run", "send", "listen", "receipts", "revoke",
                                 "roster"]


def test_token_offers_the_admin_role():
    parser = build_parser()
    assert parser.parse_args(["token", "--user", "op", "--dept", "ops", "--role", "admin"]).role == "admin"


def test_token_mints_an_admin_and_refuses_all_and_a_ttl_past_the_longest():
    env = {"DEPTCAST_JWT_SECRET": SECRET, "PATH": ""}
    out = run("token", "--user", "op", "--dept", "ops", "--role", "admin", env=env)
    assert out.returncode == 0 and verify_token(SECRET, out.stdout.strip()).is_admin
    out = run("token", "--user", "bob", "--dept", "All", env=env)
    assert out.returncode == 2 and "reserved" in out.stderr and not out.stdout
    short = {**env, "DEPTCAST_MAX_TOKEN_TTL": "3600"}
    out = run("token", "--user", "bob", "--dept", "ortho", "--ttl", "3601", env=short)
    assert out.returncode == 2 and "DEPTCAST_MAX_TOKEN_TTL" in out.stderr and not out.stdout
    out = run("token", "--user", "bob", "--dept", "ortho", "--ttl", "3600", env=short)
    assert out.returncode == 0
