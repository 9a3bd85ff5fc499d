"""Unit tests of components.ops.supervisor: its restart delays, and how it starts the node."""

from components.ops.supervisor import Backoff, node_command


def test_delays_grow_while_the_node_fails_soon_after_starting_and_reset_once_it_ran_long():
    b = Backoff(first=0.5, most=4.0, stable_after=60.0)
    assert [b.after_run(1.0) for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert b.after_run(120.0) == 0.5
    assert b.after_run(2.0) == 1.0


def test_how_deptcast_run_starts_the_node():
    assert node_command(None, "text")[-8:] == ["--mode", "quiet", "--format", "text", "--loglevel", "info",
                                               "--", "start"]
    assert node_command("debug", "text")[1:] == ["start", "--loglevel", "debug"]
    assert node_command("info", "json")[-8:] == ["--mode", "all", "--format", "json", "--loglevel", "info",
                                                 "--", "start"]
