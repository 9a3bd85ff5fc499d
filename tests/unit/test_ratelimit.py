"""Unit tests of components.core.ratelimit with an explicit clock."""

from components.core.ratelimit import RateLimiter


def test_burst_then_refill():
    limiter = RateLimiter(rate=2.0, burst=3)
    assert [limiter.allow("a", 0.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("b", 0.0) is True           # per key
    assert limiter.allow("a", 0.4) is False          # 0.8 token
    assert limiter.allow("a", 0.5) is True           # 1.0 token
    assert limiter.allow("a", 100.0) is True         # refills to burst, not beyond
    assert [limiter.allow("a", 100.0) for _ in range(3)] == [True, True, False]


def test_zero_rate_disables():
    limiter = RateLimiter(rate=0, burst=1)
    assert all(limiter.allow("a", 0.0) for _ in range(100))


def test_forgets_full_buckets_when_many_keys():
    limiter = RateLimiter(rate=1.0, burst=1, max_keys=2)
    assert limiter.allow("a", 0.0) and limiter.allow("b", 0.0)
    assert limiter.allow("c", 10.0)                  # a and b refilled: forgotten
    assert set(limiter._buckets) == {"c"}
