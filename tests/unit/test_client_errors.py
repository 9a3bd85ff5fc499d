"""Unit tests of :mod:`components.client.errors`: a WAMP error read into the client's exception."""

from autobahn.wamp.exception import ApplicationError

from components.client import errors
from components.core import errors as core_errors


def test_a_wamp_error_becomes_the_class_of_its_uri_with_its_reason():
    error = errors.as_error(ApplicationError(core_errors.INVALID_FRAME, "no message"))
    assert type(error) is errors.InvalidFrame
    assert (error.uri, error.reason) == (core_errors.INVALID_FRAME, "no message")


def test_a_wamp_error_without_a_text_reason_has_an_empty_one():
    """``ApplicationError`` has no ``message``: a reason that is missing or not text reads as empty."""
    for error in (ApplicationError(core_errors.NOT_AUTHORIZED), ApplicationError(core_errors.NOT_AUTHORIZED, None)):
        converted = errors.as_error(error)
        assert type(converted) is errors.NotAuthorized
        assert (converted.uri, converted.reason) == (core_errors.NOT_AUTHORIZED, "")
