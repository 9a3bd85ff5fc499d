"""Unit tests of components.ops.supervisor's restart delays."""

from components.ops.supervisor import Backoff


def test_delays_grow_while_the_node_fails_soon_after_starting_and_reset_once_it_ran_long():
    b = Backoff(first=0.5, most=4.0, stable_after=60.0)
    assert [b.after_run(1.0) for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert b.after_run(120.0) == 0.5
    assert b.after_run(2.0) == 1.0
