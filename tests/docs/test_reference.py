"""The reference pages against the code: every setting the node reads, every option of every
``deptcast`` command, every name of the contract, every metric a node exposes."""

import argparse
import re
import urllib.request
from typing import Dict, Set

import pytest

from components.core import errors, names
from components.ops.cli import build_parser
from tests.support.nodes import REPO

DOCS = REPO / "docs"


def section(page: str, heading: str) -> str:
    """The text of ``page`` under the heading ``heading``, up to the next heading of its level."""
    text = (DOCS / page).read_text()
    match = re.search(rf"^(#+) {re.escape(heading)}\n", text, re.M)
    assert match, f"{page} has no heading {heading!r}"
    rest = text[match.end():]
    end = re.search(rf"^#{{1,{len(match.group(1))}}} ", rest, re.M)
    return rest[: end.start()] if end else rest


def first_column(text: str) -> str:
    return "\n".join(line.split("|")[1] for line in text.splitlines() if line.startswith("| "))


# -- settings


def variables(text: str) -> Set[str]:
    return set(re.findall(r"\bDEPTCAST_[A-Z][A-Z_]*[A-Z]\b", text))


def test_every_setting_the_code_reads_is_documented_and_nothing_else():
    read = set().union(*(variables(p.read_text()) for p in (REPO / "components").rglob("*.py")))
    documented = variables((DOCS / "reference" / "settings.md").read_text())
    scripts = set().union(*(variables(p.read_text()) for p in (REPO / "scripts").iterdir()))
    assert read - documented == set()
    assert documented - read - scripts == set()


# -- the command line


def commands(parser: argparse.ArgumentParser, prefix: str = "deptcast") -> Dict[str, argparse.ArgumentParser]:
    """Every command that takes options, by its full name (``deptcast cluster init``)."""
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.update(commands(sub, f"{prefix} {name}"))
            return found
    return {prefix: parser}


def options(parser: argparse.ArgumentParser) -> Set[str]:
    return {o for a in parser._actions for o in a.option_strings if o not in ("-h", "--help")}


CLI = commands(build_parser())


def test_the_reference_has_a_section_for_every_command():
    text = (DOCS / "reference" / "cli.md").read_text()
    assert set(re.findall(r"^## `(deptcast [a-z -]+)`$", text, re.M)) == set(CLI)


@pytest.mark.parametrize("command", sorted(CLI))
def test_the_reference_documents_exactly_the_options_of(command):
    text = section("reference/cli.md", f"`{command}`")
    if "[connection options](#connection-options)" in text:
        text += section("reference/cli.md", "Connection options")
    documented = set(re.findall(r"`(--?[a-z][a-z-]*)", first_column(text)))
    assert documented == options(CLI[command])


# -- the contract


def test_the_contract_names_every_procedure_topic_role_and_error():
    text = (DOCS / "reference" / "contract.md").read_text()
    fixed = {f"`{names.REALM}`", f"`{names.TOPIC_ALL}`", f"`{names.CLOSE_GOING_AWAY}`",
             f"`{names.TOPIC_DEPT}<dept>`", f"`{names.TOPIC_USER}<dept>_<user>`", f"`{names.TOPIC_PRESENCE}<dept>`"}
    fixed |= {f"`{p}(" for p in names.CLIENT_PROCEDURES} | {f"`{r}`" for r in names.CLIENT_ROLES}
    fixed |= {f"`{uri}`" for uri in vars(errors).values()
              if isinstance(uri, str) and uri.startswith("deptcast.error.") and uri != errors.CONFIG}
    assert {name for name in fixed if name not in text} == set()


# -- metrics


def test_the_metrics_table_is_what_a_node_exposes(docs_node):
    with urllib.request.urlopen(f"http://127.0.0.1:{docs_node.port}/metrics", timeout=10) as answer:
        exposed = dict(re.findall(r"^# TYPE (deptcast_\w+) (\w+)$", answer.read().decode(), re.M))
    table = section("operating/health-and-metrics.md", "Metrics")
    documented = dict(re.findall(r"^\| `(deptcast_\w+)` \| (\w+) \|", table, re.M))
    assert documented == exposed
