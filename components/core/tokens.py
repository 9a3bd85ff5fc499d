"""Identity tokens: HS256 JWTs verified with PyJWT.

Claims: ``sub`` (user id), ``dept`` (department code), ``role`` (``member`` or
``publisher``, default ``member``) and ``exp``, all checked here and nowhere else.
"""

import base64
import binascii
import time
from dataclasses import dataclass
from typing import Optional

import jwt

from components.core.errors import INVALID_TOKEN, TOKEN_EXPIRED, Refused
from components.core.jsonlimits import MAX_DEPTH, nesting_depth
from components.core.names import CLIENT_ROLES, MEMBER, NAME_RULE, PUBLISHER, is_name, user_key

ALGORITHM = "HS256"
#: the longest token accepted (deptcast's own are about 250 characters). PyJWT parses a
#: token's JSON header before it checks the signature, so anyone can make the router worker
#: parse it: its size and nesting are bounded first (see components.core.jsonlimits)
MAX_TOKEN_CHARS = 4096


@dataclass(frozen=True)
class Identity:
    """Who a session is: user id, department and role."""

    user: str
    dept: str
    role: str = MEMBER

    @property
    def is_publisher(self) -> bool:
        return self.role == PUBLISHER

    @property
    def key(self) -> str:
        """The user key ``<dept>_<user>``: a user is the pair (department, user id)."""
        return user_key(self.dept, self.user)


def issue_token(secret: str, user: str, dept: str, role: str = MEMBER, ttl: int = 3600,
                now: Optional[float] = None) -> str:
    """Sign a token for ``user`` in ``dept``.

    :param ttl: seconds until the token expires
    :raises ValueError: if a name or the role is not valid
    :rtype: str
    """
    if not is_name(user):
        raise ValueError(f"invalid user id {user!r}: use {NAME_RULE}")
    if not is_name(dept):
        raise ValueError(f"invalid department code {dept!r}: use {NAME_RULE}")
    if role not in CLIENT_ROLES:
        raise ValueError(f"invalid role {role!r}: use one of {', '.join(CLIENT_ROLES)}")
    if ttl <= 0:
        raise ValueError("ttl must be a positive number of seconds")
    issued = int(now if now is not None else time.time())
    claims = {"sub": user, "dept": dept, "role": role, "iat": issued, "exp": issued + int(ttl)}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(secret: str, token: object, authid: Optional[str] = None) -> Identity:
    """Check a token and return the identity it carries.

    :param authid: the authid the client asked for, if any; it must equal ``sub``
    :raises Refused: ``token_expired`` for an expired token, ``invalid_token`` otherwise
    :rtype: Identity
    """
    if not isinstance(token, str) or not token:
        raise Refused(INVALID_TOKEN, "no token given")
    _check_shape(token)
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM],
                            options={"require": ["sub", "dept", "exp"]})
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
    if role not in CLIENT_ROLES:
        raise Refused(INVALID_TOKEN, f"the token's role must be one of {', '.join(CLIENT_ROLES)}")
    if authid is not None and authid != user:
        raise Refused(INVALID_TOKEN, "the authid does not match the token's subject")
    return Identity(user=user, dept=dept, role=role)


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
