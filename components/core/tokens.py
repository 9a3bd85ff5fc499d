"""Identity tokens: HS256 JWTs verified with PyJWT.

Claims: ``sub`` (user id), ``dept`` (department code, never the reserved ``All``), ``role``
(``member``, ``publisher`` or ``admin``, default ``member``), ``exp`` and ``iat`` (issued at,
optional), all checked here and nowhere else. A token lives at most
:data:`DEFAULT_MAX_TOKEN_TTL` (the setting ``DEPTCAST_MAX_TOKEN_TTL``): ``exp - iat`` (without
``iat``: ``exp`` - now) may not be longer. That bound is what lets a revocation be forgotten
once it is that old (see :mod:`components.service.sessionlife`).
"""

import base64
import binascii
import time
from dataclasses import dataclass
from typing import Optional

import jwt

from components.core.errors import INVALID_TOKEN, TOKEN_EXPIRED, Refused
from components.core.jsonlimits import MAX_DEPTH, nesting_depth
from components.core.names import ADMIN, ALL, CLIENT_ROLES, MEMBER, NAME_RULE, PUBLISHER, is_name, user_key

ALGORITHM = "HS256"
#: the longest token accepted (deptcast's own are about 250 characters). PyJWT parses a
#: token's JSON header before it checks the signature, so anyone can make the router worker
#: parse it: its size and nesting are bounded first (see components.core.jsonlimits)
MAX_TOKEN_CHARS = 4096
#: the longest lifetime (``exp`` - ``iat``) a token may have, in seconds: 7 days
DEFAULT_MAX_TOKEN_TTL = 7 * 24 * 3600
#: seconds an ``iat`` may lie ahead of the node's clock (an issuer's clock may run ahead); one
#: further ahead would outlive a revocation
MAX_CLOCK_SKEW = 60


@dataclass(frozen=True)
class Identity:
    """Who a session is: user id, department and role."""

    user: str
    dept: str
    role: str = MEMBER

    @property
    def is_publisher(self) -> bool:
        """Whether it has a publisher's rights (an ``admin`` has them too)."""
        return self.role in (PUBLISHER, ADMIN)

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN

    @property
    def key(self) -> str:
        """The user key ``<dept>_<user>``: a user is the pair (department, user id)."""
        return user_key(self.dept, self.user)


@dataclass(frozen=True)
class Grant:
    """What a verified token grants: the identity, and the token's life.

    :ivar iat: issued at, seconds since the epoch (``None``: the token has no ``iat``)
    :ivar exp: expires at, seconds since the epoch
    """

    identity: Identity
    exp: int
    iat: Optional[int] = None


def issue_token(secret: str, user: str, dept: str, role: str = MEMBER, ttl: int = 3600,
                now: Optional[float] = None, max_ttl: int = DEFAULT_MAX_TOKEN_TTL) -> str:
    """Sign a token for ``user`` in ``dept``, issued now (``iat``).

    :param ttl: seconds until the token expires, at most ``max_ttl``
    :raises ValueError: if a name, the role or the ttl is not valid
    :rtype: str
    """
    if not is_name(user):
        raise ValueError(f"invalid user id {user!r}: use {NAME_RULE}")
    if not is_name(dept):
        raise ValueError(f"invalid department code {dept!r}: use {NAME_RULE}")
    if dept == ALL:
        raise ValueError(f"the department code {ALL!r} is reserved (it means everyone)")
    if role not in CLIENT_ROLES:
        raise ValueError(f"invalid role {role!r}: use one of {', '.join(CLIENT_ROLES)}")
    if ttl <= 0:
        raise ValueError("ttl must be a positive number of seconds")
    if ttl > max_ttl:
        raise ValueError(f"ttl {int(ttl)} is longer than the longest a node accepts, {max_ttl} seconds "
                         f"(DEPTCAST_MAX_TOKEN_TTL)")
    issued = int(now if now is not None else time.time())
    claims = {"sub": user, "dept": dept, "role": role, "iat": issued, "exp": issued + int(ttl)}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(secret: str, token: object, authid: Optional[str] = None,
                 max_ttl: int = DEFAULT_MAX_TOKEN_TTL) -> Identity:
    """Check a token and return the identity it carries (see :func:`read_token`).

    :raises Refused: ``token_expired`` for an expired token, ``invalid_token`` otherwise
    :rtype: Identity
    """
    return read_token(secret, token, authid, max_ttl).identity


def read_token(secret: str, token: object, authid: Optional[str] = None,
               max_ttl: int = DEFAULT_MAX_TOKEN_TTL, now: Optional[float] = None) -> Grant:
    """Check a token and return what it grants.

    :param authid: the authid the client asked for, if any; it must equal ``sub``
    :param max_ttl: the longest lifetime accepted (``exp`` - ``iat``; without ``iat``, ``exp`` - now)
    :raises Refused: ``token_expired`` for an expired token, ``invalid_token`` otherwise
    :rtype: Grant
    """
    if not isinstance(token, str) or not token:
        raise Refused(INVALID_TOKEN, "no token given")
    _check_shape(token)
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM],
                            options={"require": ["sub", "dept", "exp"], "verify_iat": False})
    except jwt.ExpiredSignatureError:
        raise Refused(TOKEN_EXPIRED, "the token has expired") from None
    except jwt.MissingRequiredClaimError as e:
        raise Refused(INVALID_TOKEN, f"the token lacks the claim {e.claim!r}") from None
    except jwt.InvalidSignatureError:
        raise Refused(INVALID_TOKEN, "the token's signature does not verify") from None
    except jwt.InvalidTokenError as e:
        raise Refused(INVALID_TOKEN, f"the token is not valid: {e}") from None

    user, dept, role = claims["sub"], claims["dept"], claims.get("role", MEMBER)
    if not is_name(user):
        raise Refused(INVALID_TOKEN, "the token's 'sub' is not a valid user id")
    if not is_name(dept):
        raise Refused(INVALID_TOKEN, "the token's 'dept' is not a valid department code")
    if dept == ALL:
        raise Refused(INVALID_TOKEN, f"the department code {ALL!r} is reserved")
    if role not in CLIENT_ROLES:
        raise Refused(INVALID_TOKEN, f"the token's role must be one of {', '.join(CLIENT_ROLES)}")
    if authid is not None and authid != user:
        raise Refused(INVALID_TOKEN, "the authid does not match the token's subject")
    exp, iat = claims["exp"], claims.get("iat")
    if not _seconds(exp):
        raise Refused(INVALID_TOKEN, "the token's 'exp' is not a number of seconds")
    if iat is not None and not _seconds(iat):
        raise Refused(INVALID_TOKEN, "the token's 'iat' is not a number of seconds")
    clock = int(now if now is not None else time.time())
    if iat is not None and iat > clock + MAX_CLOCK_SKEW:
        raise Refused(INVALID_TOKEN, "the token's 'iat' is in the future")
    start = int(iat) if iat is not None else clock
    if int(exp) - start > max_ttl:
        raise Refused(INVALID_TOKEN, f"the token lives longer than {max_ttl} seconds, the most a node accepts")
    return Grant(Identity(user=user, dept=dept, role=role), exp=int(exp),
                 iat=int(iat) if iat is not None else None)


def _seconds(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 2 ** 53


def _check_shape(token: str) -> None:
    """Refuse a token too long, or whose header or claims nest deeper than
    :data:`~components.core.jsonlimits.MAX_DEPTH`, before PyJWT parses any of it.

    :raises Refused: ``invalid_token``
    """
    if len(token) > MAX_TOKEN_CHARS:
        raise Refused(INVALID_TOKEN, f"the token is longer than {MAX_TOKEN_CHARS} characters")
    if not token.isascii():
        # a JWT is base64url and dots; PyJWT would fail to encode a lone surrogate
        raise Refused(INVALID_TOKEN, "the token is not a JWT (it holds characters other than ASCII)")
    for segment in token.split(".")[:2]:
        try:
            decoded = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        except (ValueError, binascii.Error):
            continue  # not base64: PyJWT refuses it without parsing anything
        if nesting_depth(decoded.decode("utf-8", "replace")) > MAX_DEPTH:
            raise Refused(INVALID_TOKEN, "the token's JSON nests too deep")
