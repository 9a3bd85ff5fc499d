"""The error URIs of the deptcast contract and the exception that carries them.

Pure logic raises :class:`Refused`; the WAMP adapters turn it into an
``ApplicationError`` with the same URI, the legacy endpoint into a JSON error frame.
"""

from typing import Optional

INVALID_TOKEN = "deptcast.error.invalid_token"
TOKEN_EXPIRED = "deptcast.error.token_expired"
INVALID_FRAME = "deptcast.error.invalid_frame"
NOT_AUTHORIZED = "deptcast.error.not_authorized"
TOO_LARGE = "deptcast.error.too_large"
RATE_LIMITED = "deptcast.error.rate_limited"
#: the node cannot serve the request right now (starting, its store or links down); retry shortly
UNAVAILABLE = "deptcast.error.unavailable"
#: a history request reaches back past what retention removed: load the newest page (not a retry)
PRUNED = "deptcast.error.pruned"
#: a component stopped because a setting is missing or malformed (a leave reason, never sent to clients)
CONFIG = "deptcast.error.config"


class Refused(Exception):
    """A request deptcast refuses, with the contract's error URI and a readable reason.

    :param uri: one of the ``deptcast.error.*`` URIs above
    :param detail: a human-readable sentence saying what was wrong
    :param retry_after: seconds after which a retry may succeed (``unavailable``, ``rate_limited``)
    """

    def __init__(self, uri: str, detail: str, retry_after: Optional[float] = None) -> None:
        super().__init__(uri, detail)
        self.uri = uri
        self.detail = detail
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"{self.uri}: {self.detail}"
