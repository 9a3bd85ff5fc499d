"""The client's credentials (``components.client.ticket``): a token asked on every connect."""

import pytest
import txaio
from twisted.internet import defer

from components.client.ticket import TicketAuthenticator, token_provider

txaio.use_twisted()  # a provider's Deferred is a future here, as in a Twisted program


def test_a_provider_is_asked_for_a_token_on_every_connect():
    tokens = iter(["first", "second"])
    provider, fixed = token_provider(lambda: next(tokens))
    auth = TicketAuthenticator(provider)
    assert not fixed
    assert auth.on_challenge(None, None) == "first"
    assert auth.on_challenge(None, None) == "second"
    assert auth._args == {} and auth.authextra == {}  # no authid: the node takes the user from the token
    deferred_token = TicketAuthenticator(lambda: defer.succeed("later"))
    assert deferred_token.on_challenge(None, None).result == "later"


def test_an_awaitable_token_is_awaited():
    async def fetch():
        return "from a coroutine"
    assert TicketAuthenticator(fetch).on_challenge(None, None).result == "from a coroutine"


def test_a_fixed_token_is_said_to_be_fixed():
    provider, fixed = token_provider("tok")
    assert fixed and provider() == "tok" == provider()
    with pytest.raises(TypeError, match="a string or a function"):
        token_provider(42)
