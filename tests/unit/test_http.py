"""Unit tests of :mod:`components.edge.http`: bearer tokens and the status of each error."""

import pytest

from components.core.errors import (INVALID_FRAME, INVALID_TOKEN, NOT_AUTHORIZED, RATE_LIMITED, TOKEN_EXPIRED,
                                    TOO_LARGE, UNAVAILABLE, Refused)
from components.edge import http

@pytest.mark.parametrize("header, token", [("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("BEARER x.y.z", "x.y.z")])
def test_bearer_token(header, token):
    assert http.bearer_token(header) == token


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Basic abc", "abc"])
def test_bearer_token_refusals(header):
    with pytest.raises(Refused) as info:
        http.bearer_token(header)
    assert info.value.uri == INVALID_TOKEN


def test_http_status_of_each_error():
    assert [http.http_status(u) for u in (INVALID_FRAME, INVALID_TOKEN, TOKEN_EXPIRED, NOT_AUTHORIZED,
                                        TOO_LARGE, RATE_LIMITED, UNAVAILABLE, "x.unknown")] == \
        [400, 401, 401, 403, 413, 429, 503, 500]
