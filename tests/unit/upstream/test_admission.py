"""The admission rule before authentication (``bounds.before_auth``): which upgrade is let in,
and the ``Retry-After`` a refused one is given."""

import pytest

from components.upstream.bounds import RETRY_AFTER_CAP, Pressure, admit, retry_after


@pytest.mark.parametrize("authenticating, bound, admitted", [
    (0, 3, True), (2, 3, True), (3, 3, False), (4, 3, False),
    (0, 0, True), (100_000, 0, True),  # 0: no bound
    (0, 1, True), (1, 1, False),
])
def test_admit_lets_in_while_fewer_than_the_bound_are_authenticating(authenticating, bound, admitted):
    assert admit(authenticating, bound) is admitted


def test_the_hint_spreads_the_refused_over_the_time_to_admit_them():
    # 1,000 refused in 5 s while 200 a second were authenticated: 5 s of work, hints 1..5 s
    hints = {retry_after(1000, 1000, 5.0, bound=100, draw=k / 100) for k in range(100)}
    assert hints == {1, 2, 3, 4, 5}
    # the lowest draw is always 1 s, the highest the whole queue's length
    assert retry_after(18_000, 1000, 5.0, bound=100, draw=0.0) == 1
    assert retry_after(18_000, 1000, 5.0, bound=100, draw=0.999) == RETRY_AFTER_CAP


def test_the_pace_is_at_least_the_bound_in_ten_seconds():
    # nobody authenticated yet (the first second of a failover): the bound's own pace, 100/s here
    assert retry_after(1000, 0, 5.0, bound=1000, draw=0.999) == 10
    # a node authenticating faster than that is taken at its pace
    assert retry_after(1000, 2500, 5.0, bound=1000, draw=0.999) == 2


@pytest.mark.parametrize("refused, authenticated, seconds, bound", [
    (0, 0, 5.0, 0), (1, 0, 0.0, 0), (10 ** 9, 0, 5.0, 1), (5, 10 ** 9, 5.0, 10 ** 6), (3, 3, 1e-9, 3),
])
def test_the_hint_is_a_whole_number_of_seconds_from_1_to_the_cap(refused, authenticated, seconds, bound):
    for draw in (0.0, 0.5, 0.999999):
        hint = retry_after(refused, authenticated, seconds, bound, draw)
        assert isinstance(hint, int) and 1 <= hint <= RETRY_AFTER_CAP


def test_pressure_counts_the_current_and_the_previous_window_only():
    now = [100.0]
    p = Pressure(window=5.0, clock=lambda: now[0], draw=lambda: 0.999)
    for _ in range(20):
        p.authenticated()  # 20 in the window 100-105: 4/s
    # bound 10: the pace is max(20 / 5 s, 1/s) = 4/s; 40 refused: 10 s
    hints = [p.refused(bound=10) for _ in range(40)]
    assert hints[-1] == 10
    now[0] = 106.0  # the next window: the last one's counts still count (over 6 s)
    assert p.refused(bound=10) == 1 + int(0.999 * (41 / (20 / 6.0)))
    now[0] = 121.0  # two windows later: forgotten
    assert p.refused(bound=10) == 1
