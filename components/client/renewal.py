"""When and how a client renews its token, as plain functions (the browser client's rules, in
``web/refresh.js``, are the same):

1. *When.* Ahead of ``exp``: at 80 % of the token's lifetime (from ``iat``, else from when the
   client got it) or 60 s before ``exp``, whichever is sooner, but never before half of the
   lifetime, minus a random part of up to a tenth of the lifetime, so that clients that signed
   in together do not all ask in the same second (:func:`refresh_at`).
2. *Again.* A source that gives no newer token, or a node that cannot take it now, is asked
   again while the token lasts: after a quarter of what is left, 0.25 s to 30 s
   (:func:`retry_before_expiry`).
3. *What a token is to the one held* (:func:`compare_tokens`): a renewal (same user, department
   and role, a later ``exp``), another role (a new session is needed), another user (not a
   renewal), or nothing newer.

The claims are read without checking the signature: the node checks it.
"""

import math
import random
import re
from typing import Any, Callable, Dict, Optional

import jwt

from components.core.errors import INVALID_TOKEN

#: share of a token's lifetime after which it is renewed
REFRESH_SHARE = 0.8
#: renew at the latest this many seconds before ``exp``
REFRESH_LEAD = 60.0
#: never renew before this share of the lifetime
REFRESH_FLOOR_SHARE = 0.5
#: up to this share of the lifetime is taken off at random
REFRESH_JITTER_SHARE = 0.1
#: the shortest wait before asking again, and the least time left worth asking in
MIN_RETRY = 0.25
#: the longest wait before asking again
MAX_RETRY = 30.0
#: the longest token read (the node refuses longer ones)
MAX_TOKEN_CHARS = 8192

_REVOKED = re.compile(r"\brevoked\b", re.I)

NEWER = "newer"
ROLE = "role"
IDENTITY = "identity"
STALE = "stale"
INVALID = "invalid"


def as_seconds(value: Any) -> Optional[float]:
    """``value`` as seconds (a finite number, not a bool), or ``None``.

    :rtype: float or None
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def claims_of(token: Any) -> Optional[Dict[str, Any]]:
    """The claims of a JWT, unverified: ``{"sub", "dept", "role", "exp", "iat"}`` (``exp`` and
    ``iat`` ``None`` when missing or not numbers, ``role`` ``"member"`` when missing), or
    ``None`` if it is not a deptcast token.

    :rtype: dict or None
    """
    if not isinstance(token, str) or not token.isascii() or len(token) > MAX_TOKEN_CHARS:
        return None
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except (jwt.InvalidTokenError, RecursionError, ValueError):
        return None
    if not isinstance(claims, dict):
        return None
    sub, dept, role = claims.get("sub"), claims.get("dept"), claims.get("role", "member")
    if not isinstance(sub, str) or not isinstance(dept, str) or not isinstance(role, str):
        return None
    return {"sub": sub, "dept": dept, "role": role, "exp": as_seconds(claims.get("exp")),
            "iat": as_seconds(claims.get("iat"))}


def refresh_at(exp: Optional[float], iat: Optional[float], received_at: float,
               rand: Callable[[], float] = random.random) -> Optional[float]:
    """When to renew a token that expires at ``exp`` (seconds since the epoch; ``None``: it
    does not expire), issued at ``iat`` (or got at ``received_at`` if it has no usable one).

    :rtype: float or None
    """
    if exp is None:
        return None
    start = iat if iat is not None and iat < exp else received_at
    life = exp - start
    if life <= 0:
        return received_at
    base = max(start + REFRESH_FLOOR_SHARE * life, min(start + REFRESH_SHARE * life, exp - REFRESH_LEAD))
    return base - rand() * REFRESH_JITTER_SHARE * life


def retry_before_expiry(exp: Optional[float], now: float) -> Optional[float]:
    """Seconds to wait before asking again while a token that ends at ``exp`` lasts: a quarter
    of what is left, :data:`MIN_RETRY` to :data:`MAX_RETRY`; ``None`` once less than
    :data:`MIN_RETRY` is left (or it does not expire).

    :rtype: float or None
    """
    if exp is None:
        return None
    left = exp - now
    if left <= MIN_RETRY:
        return None
    return min(MAX_RETRY, max(MIN_RETRY, left / 4))


def compare_tokens(current: Any, candidate: Any) -> str:
    """What ``candidate`` is to the token held now: :data:`NEWER` (same user, department and
    role, a later ``exp``), :data:`ROLE` (same user and department, another role),
    :data:`IDENTITY` (another user or department), :data:`STALE` (not later) or
    :data:`INVALID` (not a deptcast token).

    :rtype: str
    """
    now, then = claims_of(current), claims_of(candidate)
    if then is None:
        return INVALID
    if now is None or (now["sub"], now["dept"]) != (then["sub"], then["dept"]):
        return IDENTITY
    if now["role"] != then["role"]:
        return ROLE
    if then["exp"] is not None and (now["exp"] is None or then["exp"] > now["exp"]):
        return NEWER
    return STALE


def is_revocation(uri: str, message: Any) -> bool:
    """Whether a refusal at sign-in means the user was revoked: ``invalid_token`` with the
    reason "revoked" (the node's GOODBYE ``deptcast.close.revoked`` says it by its reason).

    :rtype: bool
    """
    return uri == INVALID_TOKEN and isinstance(message, str) and _REVOKED.search(message) is not None
