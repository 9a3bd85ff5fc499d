"""How long a client waits before it asks again: after a refusal it may retry
(``deptcast.error.unavailable``: a growing, spread delay) and after ``rate_limited`` (the
node's ``retry_after``). Plain functions: the caller sets the timer.
"""

import math
import random
from typing import Callable

#: seconds to wait after a ``rate_limited`` refusal that carries no ``retry_after``
RATE_LIMIT_WAIT = 1.0
#: the longest wait a ``retry_after`` may ask for (a larger one is taken as this)
MAX_RETRY_AFTER = 60.0


def backoff(attempt: int, base: float = 0.25, cap: float = 5.0,
            rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait before retry number ``attempt`` (0, 1, 2, ...) of a refused call:
    doubling from ``base`` up to ``cap``, each spread over half to one and a half times its
    value, so that clients refused together do not retry together.

    :rtype: float
    """
    return min(cap, base * (2 ** min(attempt, 30))) * (0.5 + rand())


def rate_limit_wait(retry_after: object) -> float:
    """Seconds to wait after a ``rate_limited`` refusal: its ``retry_after`` keyword (seconds)
    if it is a usable number, else :data:`RATE_LIMIT_WAIT`; at most :data:`MAX_RETRY_AFTER`.

    :rtype: float
    """
    if isinstance(retry_after, bool) or not isinstance(retry_after, (int, float)):
        return RATE_LIMIT_WAIT
    if math.isnan(retry_after) or retry_after <= 0:
        return RATE_LIMIT_WAIT
    return min(MAX_RETRY_AFTER, float(retry_after))
