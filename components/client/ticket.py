"""The client's credentials: WAMP-Ticket with a token asked of a provider on every connect,
so that a long-running client never reconnects on an expired token.
"""

import inspect
from typing import Any, Callable, Dict, Optional, Tuple, Union

import txaio
from autobahn.wamp.interfaces import IAuthenticator

#: a token, or a function that returns one (or an awaitable of one), asked on every connect
TokenSource = Union[str, Callable[[], Any]]


def token_provider(token: TokenSource) -> Tuple[Callable[[], Any], bool]:
    """A function asked for the token on every connect, and whether the token is fixed (a
    fixed token that is refused will not get better).

    :raises TypeError: if ``token`` is neither a string nor a function
    :rtype: tuple
    """
    if isinstance(token, str):
        fixed = token
        return (lambda: fixed), True
    if callable(token):
        return token, False
    raise TypeError("token must be a string or a function that returns one")


class TicketAuthenticator:
    """WAMP-Ticket with a token asked of ``provider`` on every connect, so a token that
    expires is replaced on the next reconnect. No authid is sent: the node takes the user
    from the token.

    :param on_token: told each token given to the node (the session's renewals start from it)
    """

    name = "ticket"

    def __init__(self, provider: Callable[[], Any], on_token: Optional[Callable[[Any], None]] = None) -> None:
        self._provider = provider
        self._on_token = on_token or (lambda token: None)
        #: what Autobahn's session reads for authid and authrole (none)
        self._args: Dict[str, Any] = {}

    @property
    def authextra(self) -> Dict[str, Any]:
        return {}

    def on_challenge(self, session: Any, challenge: Any) -> Any:
        token = self._provider()
        if inspect.isawaitable(token) and not txaio.is_future(token):
            async def wait():
                return await token
            token = txaio.as_future(wait)
        if txaio.is_future(token):
            def given(value: Any) -> Any:
                self._on_token(value)
                return value
            txaio.add_callbacks(token, given, None)
            return token
        self._on_token(token)
        return token

    def on_welcome(self, session: Any, authextra: Any) -> None:
        return None


IAuthenticator.register(TicketAuthenticator)
