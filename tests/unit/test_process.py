"""Unit tests of components.ops.process: the arguments ``deptcast run`` passes on."""

from components.ops.process import run_args


def test_the_level_goes_first_and_the_rest_after_a_double_dash():
    assert run_args(["--loglevel", "info"]) == ["--loglevel", "info"]
    assert run_args(["--config", "c.json", "--loglevel", "warn"]) == ["--loglevel", "warn", "--", "--config", "c.json"]
    assert run_args([]) == []
