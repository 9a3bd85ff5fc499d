"""Waiting on txaio futures with the framework's timer (Twisted's ``callLater``, asyncio's
``call_later``), so that the client's modules run on either framework and on a test clock."""

from typing import Any, Callable

import txaio

#: ``call_later(delay, fn)``: a timer with a ``cancel()`` (Twisted's ``callLater``, asyncio's ``call_later``)
CallLater = Callable[..., Any]


class NoAnswer(Exception):
    """:func:`within` ran out of time."""


def sleep(call_later: CallLater, delay: float) -> Any:
    """A future that fires after ``delay`` seconds.

    :rtype: future
    """
    f = txaio.create_future()
    call_later(delay, lambda: txaio.is_called(f) or txaio.resolve(f, None))
    return f


def cancel(timer: Any) -> None:
    """Cancel a timer that may have run already (Twisted then raises ``AlreadyCalled``)."""
    try:
        timer.cancel()
    except Exception:
        pass


def within(call_later: CallLater, pending: Any, seconds: float) -> Any:
    """A future of ``pending``'s outcome, or failing with :class:`NoAnswer` if it has none after
    ``seconds`` (``pending`` itself is left to run).

    :rtype: future
    """
    f = txaio.create_future()

    def expire() -> None:
        if not txaio.is_called(f):
            txaio.reject(f, NoAnswer(f"no answer in {seconds:.1f} s"))
    timer = call_later(max(0.0, seconds), expire)

    def settled(value: Any) -> None:
        cancel(timer)
        if not txaio.is_called(f):
            txaio.resolve(f, value)

    def failed(failure: Any) -> None:
        cancel(timer)
        if not txaio.is_called(f):
            txaio.reject(f, failure)
    txaio.add_callbacks(pending, settled, failed)
    return f
