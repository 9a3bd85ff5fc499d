"""Unit tests of components.core.targets: reading ``to`` and the topic of a target."""

import pytest

from components.core.targets import Target, envelope_topic, parse_target


@pytest.mark.parametrize("to, expected", [
    ("cardio", Target("dept", "cardio", dept="cardio")),
    ("All", Target("all", "All")),
    ("cardio_bob", Target("user", "cardio_bob", dept="cardio", user="bob")),
    ("a.b-c_d.e-f", Target("user", "a.b-c_d.e-f", dept="a.b-c", user="d.e-f")),
])
def test_parse_target(to, expected):
    assert parse_target(to) == expected


def test_topics():
    assert parse_target("cardio").topic == "deptcast.dept.cardio"
    assert parse_target("All").topic == "deptcast.all"
    assert parse_target("cardio_bob").topic == "deptcast.user.cardio_bob"


def test_envelope_topic_is_the_topic_of_its_target():
    assert envelope_topic({"scope": "dept", "target": "cardio"}) == "deptcast.dept.cardio"
    assert envelope_topic({"scope": "all", "target": "All"}) == "deptcast.all"
    assert envelope_topic({"scope": "user", "target": "cardio_bob"}) == parse_target("cardio_bob").topic
