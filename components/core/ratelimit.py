"""A token-bucket rate limiter per sender, with the clock passed in (pure logic)."""

from typing import Dict, Tuple


class RateLimiter:
    """Allow ``burst`` sends at once and ``rate`` sends per second after that, per key.

    :param rate: sends per second refilled; ``0`` turns the limiter off
    :param burst: the bucket's size
    """

    def __init__(self, rate: float, burst: int, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._max_keys = max_keys
        self._buckets: Dict[str, Tuple[float, float]] = {}

    def allow(self, key: str, now: float) -> bool:
        """Take one token for ``key`` at time ``now`` (seconds); ``False`` if none is left.

        :rtype: bool
        """
        if self.rate <= 0:
            return True
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        if key not in self._buckets and len(self._buckets) >= self._max_keys:
            self._forget_full(now)
        self._buckets[key] = (tokens - 1.0, now)
        return True

    def take(self, key: str, now: float, n: int) -> int:
        """Take up to ``n`` tokens for ``key`` at time ``now``; return how many were taken
        (a batch of ``n`` sends counts as ``n``: the first ones that fit go).

        :rtype: int
        """
        if self.rate <= 0 or n <= 0:
            return max(0, n)
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        granted = min(n, int(tokens))
        if key not in self._buckets and len(self._buckets) >= self._max_keys:
            self._forget_full(now)
        self._buckets[key] = (tokens - granted, now)
        return granted

    def refund(self, key: str, n: int) -> None:
        """Give back ``n`` tokens taken for sends that cost nothing after all (a retry that
        was answered its stored envelope)."""
        if self.rate <= 0 or n <= 0 or key not in self._buckets:
            return
        tokens, last = self._buckets[key]
        self._buckets[key] = (min(float(self.burst), tokens + n), last)

    def _forget_full(self, now: float) -> None:
        # a bucket that has refilled completely carries no state worth keeping
        full = [k for k, (t, last) in self._buckets.items()
                if t + (now - last) * self.rate >= self.burst]
        for k in full:
            del self._buckets[k]
