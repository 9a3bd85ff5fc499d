"""How long a client waits before asking again (``components.core.retry``)."""

from components.core.retry import MAX_RETRY_AFTER, RATE_LIMIT_WAIT, backoff, rate_limit_wait


def test_rate_limit_wait_is_retry_after_or_one_second():
    assert RATE_LIMIT_WAIT == 1.0
    assert rate_limit_wait(None) == 1.0
    assert rate_limit_wait(2) == 2.0 and rate_limit_wait(0.25) == 0.25
    assert rate_limit_wait(3600) == MAX_RETRY_AFTER == rate_limit_wait(float("inf"))
    for bad in (0, -1, float("nan"), True, "2", [2]):
        assert rate_limit_wait(bad) == 1.0, bad


def test_backoff_grows_and_is_spread():
    assert 0.125 <= backoff(0, rand=lambda: 0.0) < 0.126
    assert backoff(0, rand=lambda: 0.999) < 0.375
    assert backoff(3, rand=lambda: 0.5) == 2.0
    assert backoff(50, rand=lambda: 0.5) == 5.0
    assert len({backoff(2) for _ in range(20)}) > 1
