"""The contract's errors as Python exceptions: one class per ``deptcast.error.*`` URI
(:func:`as_error` turns a refused call's WAMP error into one).

A refused call raises the class of its URI, whose ``uri`` and ``reason`` are the node's::

    try:
        await client.send("cardio", "Ward round at 10:30")
    except RateLimited:
        ...                      # slow down
    except DeptcastError as e:   # any other refusal
        print(e.uri, e.reason)
"""

from typing import Any, Dict, Optional, Type

from autobahn.wamp.exception import ApplicationError

from components.client import contract
from components.core import errors


class DeptcastError(Exception):
    """A refusal from deptcast, or a client that cannot reach it.

    :ivar uri: the error URI (``deptcast.error.*``, or the router's ``wamp.error.*``)
    :ivar reason: the node's readable reason
    :ivar kwargs: the error's keyword arguments (e.g. ``retry_after`` of ``rate_limited``)
    """

    #: the URI of this class (subclasses); the base class carries whatever URI came
    URI = ""

    def __init__(self, reason: str = "", uri: Optional[str] = None, kwargs: Optional[Dict[str, Any]] = None) -> None:
        self.uri = uri or self.URI
        self.reason = reason
        self.kwargs: Dict[str, Any] = dict(kwargs or {})
        super().__init__(self.uri, reason)

    def __str__(self) -> str:
        return f"{self.uri}: {self.reason}" if self.reason else self.uri


class InvalidToken(DeptcastError):
    """The token does not verify (bad signature, a missing claim, another user's authid)."""
    URI = errors.INVALID_TOKEN


class TokenExpired(DeptcastError):
    """The token has expired: refused at sign-in (``deptcast.error.token_expired``), or the node
    ended the session at the token's ``exp`` (``deptcast.close.token_expired``) because no newer
    token came: a client with a fixed token stops then; give it a token provider (a function)
    to have it renewed."""
    URI = errors.TOKEN_EXPIRED


class Revoked(DeptcastError):
    """An administrator revoked the user: the node ended its sessions (``deptcast.close.revoked``)
    or refuses its tokens (``deptcast.error.invalid_token``, reason "revoked"). The client does
    not reconnect by itself: tell the user."""
    URI = contract.CLOSE_REVOKED


class InvalidFrame(DeptcastError):
    """A missing, empty or malformed argument."""
    URI = errors.INVALID_FRAME


class NotAuthorized(DeptcastError):
    """The caller's role or department does not allow it (also the router's
    ``wamp.error.not_authorized``)."""
    URI = errors.NOT_AUTHORIZED


class TooLarge(DeptcastError):
    """The message is over the node's limit (64 KiB by default)."""
    URI = errors.TOO_LARGE


class RateLimited(DeptcastError):
    """Too many sends (or history calls) in a burst: slow down."""
    URI = errors.RATE_LIMITED


class Pruned(DeptcastError):
    """A history position older than what the node's retention kept: not a retry (the same
    request fails the same way). The client handles it itself: it goes on from the newest
    page (see :mod:`components.core.recovery`)."""
    URI = errors.PRUNED


class Unavailable(DeptcastError):
    """The node cannot serve the call now (starting, store or links down), or no node could
    be reached in time: retry later. :meth:`send` has already retried it."""
    URI = errors.UNAVAILABLE


class ConnectionLost(Unavailable):
    """The connection dropped while the call was in flight, or no answer came in time: the
    node may or may not have taken it. A send is retried with its key until its timeout (the
    node stores a notice once per key); after that, ``key`` holds the key to send it again with.

    :ivar key: the idempotency key of the send it ended, if it ended one
    """

    key: Optional[str] = None


class NotConnected(Unavailable):
    """No session came up in time to make the call (the call never left the client)."""


#: refusals that mean "the token": a client with a fixed token cannot go on after them
TOKEN_ERRORS = (InvalidToken, TokenExpired, Revoked)

_BY_URI: Dict[str, Type[DeptcastError]] = {cls.URI: cls for cls in (
    InvalidToken, TokenExpired, InvalidFrame, NotAuthorized, TooLarge, RateLimited, Pruned, Unavailable)}
# the router's own refusals that mean the same to a client
_BY_URI["wamp.error.not_authorized"] = NotAuthorized
_BY_URI["wamp.error.authorization_failed"] = NotAuthorized
# the node's procedures are not registered yet (it is starting): nothing was done, retry
_BY_URI["wamp.error.no_such_procedure"] = Unavailable
_BY_URI[contract.CLOSE_TOKEN_EXPIRED] = TokenExpired
_BY_URI[contract.CLOSE_REVOKED] = Revoked


def error_for(uri: str, reason: str = "", kwargs: Optional[Dict[str, Any]] = None) -> DeptcastError:
    """The exception for an error URI (:class:`DeptcastError` itself for an unknown one).

    :rtype: DeptcastError
    """
    cls = _BY_URI.get(uri, DeptcastError)
    return cls(reason, uri=uri, kwargs=kwargs)


def as_error(error: ApplicationError) -> DeptcastError:
    """The client exception for a WAMP error (its reason: the first argument, as deptcast
    sends it).

    :rtype: DeptcastError
    """
    if error.args and isinstance(error.args[0], str):
        reason = error.args[0]
    else:
        reason = ""
    return error_for(error.error, reason, error.kwargs if isinstance(error.kwargs, dict) else None)
