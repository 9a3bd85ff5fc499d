"""A value that comes and goes (a joined session, a service that is starting), and the
requests that wait a bounded time for it."""

from typing import Any, Callable, Generic, List, Optional, TypeVar

from twisted.internet import defer

from components.core.errors import UNAVAILABLE, Refused

T = TypeVar("T")


class Slot(Generic[T]):
    """Holds one value at a time, or nothing while it (re)starts.

    :param clock: the reactor (or a ``task.Clock`` in tests), for the waits' timeouts
    :param what: what the value is, for the ``unavailable`` refusal's reason
    """

    def __init__(self, clock: Any, what: str) -> None:
        self._clock = clock
        self._what = what
        self._value: Optional[T] = None
        self._waiters: List[defer.Deferred] = []
        self._on_set: List[Callable[[T], None]] = []
        self._on_clear: List[Callable[[], None]] = []

    @property
    def value(self) -> Optional[T]:
        """The value, or ``None`` while there is none."""
        return self._value

    def on_set(self, callback: Callable[[T], None]) -> None:
        """Call ``callback(value)`` each time a value is set."""
        self._on_set.append(callback)

    def on_clear(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` each time the value goes."""
        self._on_clear.append(callback)

    def set(self, value: T) -> None:
        self._value = value
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            if not d.called:
                d.callback(value)
        for callback in list(self._on_set):
            callback(value)

    def clear(self, value: Optional[T] = None) -> None:
        """Forget the value (only if it is ``value``, when given: a stale owner cannot clear
        its successor)."""
        if self._value is None or (value is not None and self._value is not value):
            return
        self._value = None
        for callback in list(self._on_clear):
            callback()

    def get(self, timeout: float) -> defer.Deferred:
        """Fire with the value, at once or when it is set; fail with ``Refused(unavailable)``
        after ``timeout`` seconds.

        :rtype: Deferred
        """
        if self._value is not None:
            return defer.succeed(self._value)
        d: defer.Deferred = defer.Deferred()
        self._waiters.append(d)

        def timed_out(failure):
            failure.trap(defer.TimeoutError, defer.CancelledError)
            if d in self._waiters:
                self._waiters.remove(d)
            raise Refused(UNAVAILABLE, f"{self._what} is not available yet; retry shortly")
        d.addTimeout(timeout, self._clock)
        return d.addErrback(timed_out)
