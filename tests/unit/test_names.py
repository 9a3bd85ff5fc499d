"""Unit tests of components.core.names: the naming rule and the topics built from names."""

import re

import pytest

from components.core import names

# a WAMP URI component (the router's strict rule), as in the WAMP spec's URI rules
_URI = re.compile(r"^([0-9a-z_]+\.)*([0-9a-z_]+)$")


@pytest.mark.parametrize("name", ["cardio", "R.and-D", "a", "a.b.c", "x-1", "-", "9", "a" * 64, "j.doe-2"])
def test_valid_names(name):
    assert names.is_name(name)


@pytest.mark.parametrize("name", ["", ".", "a.", ".a", "x..y", "a" * 65, "a_b", "a b", "é", "a/b", "a\n",
                                  None, 5, ["a"]])
def test_invalid_names(name):
    assert not names.is_name(name)


@pytest.mark.parametrize("dept, user", [("cardio", "bob"), ("R.and-D", "j.doe-2"), ("a.b", "c.d")])
def test_every_topic_built_from_valid_names_is_a_valid_uri(dept, user):
    for topic in names.client_topics(dept, user) + (names.presence_topic(dept),):
        assert _URI.match(topic.lower().replace("-", "_")), topic


def test_a_direct_topic_names_the_department():
    assert names.user_topic("cardio", "bob") == "deptcast.user.cardio_bob"
    assert names.user_topic("cardio", "bob") != names.user_topic("onco", "bob")
    assert names.client_topics("cardio", "bob") == ("deptcast.dept.cardio", "deptcast.all",
                                                   "deptcast.user.cardio_bob")


@pytest.mark.parametrize("key, parsed", [("cardio_bob", ("cardio", "bob")), ("a.b_c-d", ("a.b", "c-d")),
                                         ("cardio", None), ("a_b_c", None), ("x.._bob", None), ("_bob", None)])
def test_parse_user_key(key, parsed):
    assert names.parse_user_key(key) == parsed
