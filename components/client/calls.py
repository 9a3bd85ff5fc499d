"""The application's calls to the node, made safe to repeat and retried as the contract allows.

- *Keys.* A notice gets one idempotency key (:func:`new_key`, unless the application gives
  one), sent with every attempt of it: the node stores a notice once per sender and key, and
  answers a retry with the first envelope. A batch gets one key per item.
- *What is retried*, within the call's timeout: ``unavailable`` (a growing, spread delay),
  ``rate_limited`` (after its ``retry_after``), no session yet, and a call whose connection was
  lost or that got no answer (its outcome is unknown: the same keys make it safe). Every other
  refusal is raised at once: the same call would be refused again.
- Reads (receipts, recipients, the roster) and the operators' calls (a revocation, the roster's
  import and removal) are safe to repeat as they are, and retried the same way.

The ``deptcast.history`` reads of a catch-up have their own rules (:mod:`components.client.catchup`).
"""

import re
import uuid
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from autobahn.wamp.exception import ApplicationError, TransportLost

from components.client.contract import SEND_BATCH_MAX
from components.client.errors import ConnectionLost, InvalidFrame, NotConnected, RateLimited, Unavailable, as_error
from components.client.stats import Stats
from components.client.timers import CallLater, NoAnswer, sleep, within
from components.core.retry import backoff, rate_limit_wait

#: an idempotency key: 1 to 64 letters, digits, ``-``, ``_`` or ``.``
KEY_PATTERN = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
KEY_RULE = "1 to 64 letters, digits, '-', '_' or '.'"
#: seconds before a call that never left is made again (on the next session, once there is one)
NEVER_LEFT_WAIT = 0.05


def is_key(key: object) -> bool:
    """Whether ``key`` is a valid idempotency key.

    :rtype: bool
    """
    return isinstance(key, str) and KEY_PATTERN.fullmatch(key) is not None


def new_key() -> str:
    """A new idempotency key for a new notice: 32 random hex digits.

    :rtype: str
    """
    return uuid.uuid4().hex


def check_key(key: Optional[str]) -> str:
    """``key``, or a new one if it is ``None``.

    :raises InvalidFrame: if it is not a valid key
    :rtype: str
    """
    if key is None:
        return new_key()
    if not is_key(key):
        raise InvalidFrame(f"key: {KEY_RULE}")
    return key


def batch_items(items: Sequence[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """The items of a ``deptcast.send_batch`` call, each with its key (a new one where none is
    given): ``{"to", "message", "key"}``. The node checks ``to`` and ``message`` as it does
    for a single send.

    :raises InvalidFrame: more than :data:`~components.client.contract.SEND_BATCH_MAX` items, an
        item that is not an object with ``to`` and ``message``, or an invalid key
    :rtype: list
    """
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
        raise InvalidFrame("items: a list of {to, message, key?} objects")
    if len(items) > SEND_BATCH_MAX:
        raise InvalidFrame(f"items: at most {SEND_BATCH_MAX} in one batch (got {len(items)})")
    out = []
    for n, item in enumerate(items):
        if not isinstance(item, Mapping) or "to" not in item or "message" not in item:
            raise InvalidFrame(f"item {n}: an object with 'to' and 'message'")
        try:
            key = check_key(item.get("key"))
        except InvalidFrame as e:
            raise InvalidFrame(f"item {n}: {e.reason}") from None
        out.append({"to": item["to"], "message": item["message"], "key": key})
    return out


class Caller:
    """Makes calls on the engine's sessions and retries them (see the module).

    :param joined: ``joined(deadline)``: a future of a joined session, waiting until
        ``deadline`` (failing with :class:`~components.client.errors.NotConnected`)
    :param now: monotonic seconds
    :param call_later: the framework's timer
    :param stats: the client's counts (``send_retries``)
    """

    def __init__(self, joined: Callable[[float], Any], now: Callable[[], float], call_later: CallLater,
                 stats: Stats) -> None:
        self._joined = joined
        self._now = now
        self._call_later = call_later
        self.stats = stats

    async def call(self, procedure: str, args: Sequence[Any] = (), kwargs: Optional[Dict[str, Any]] = None,
                   timeout: float = 30.0) -> Any:
        """Call ``procedure`` until it is answered, retrying within ``timeout`` seconds.

        :raises DeptcastError: the class of the refusal's URI;
            :class:`~components.client.errors.ConnectionLost` if an attempt's outcome is unknown
            (lost, or unanswered) when the time is up;
            :class:`~components.client.errors.NotConnected` if no attempt reached a node
        """
        deadline = self._now() + timeout
        attempt = 0
        unknown: Optional[ConnectionLost] = None
        while True:
            try:
                session = await self._joined(deadline)
            except NotConnected:
                if unknown is not None:
                    raise unknown from None  # an earlier attempt may have been taken
                raise
            outcome = await self._attempt(session, procedure, args, kwargs or {}, deadline)
            if isinstance(outcome, _Answer):
                return outcome.value
            error = outcome
            if isinstance(error, ConnectionLost):
                unknown = error
            if isinstance(error, RateLimited):
                delay = rate_limit_wait(error.kwargs.get("retry_after"))
            elif isinstance(error, _NeverLeft):
                delay = NEVER_LEFT_WAIT  # nothing reached the node: the next session takes it
            elif isinstance(error, Unavailable):
                delay = backoff(attempt)
            else:
                raise error
            if self._now() + delay >= deadline:
                if isinstance(error, _NeverLeft):
                    raise unknown or NotConnected("no deptcast node could be reached in time")
                raise error
            attempt += 1
            self.stats.send_retries += 1
            if delay:
                await sleep(self._call_later, delay)

    async def _attempt(self, session: Any, procedure: str, args: Sequence[Any], kwargs: Dict[str, Any],
                       deadline: float) -> Any:
        """One attempt: its :class:`_Answer`, or the error to retry or raise."""
        try:
            pending = session.call(procedure, *args, **kwargs)
        except TransportLost:
            return _NeverLeft("the session closed before the call left")
        try:
            return _Answer(await within(self._call_later, pending, deadline - self._now()))
        except NoAnswer:
            return ConnectionLost(f"no answer from the node within the timeout ({procedure})")
        except TransportLost:
            return ConnectionLost(f"the connection dropped while calling {procedure}")
        except ApplicationError as e:
            if e.error.startswith("wamp.close."):
                return ConnectionLost(f"the session closed while calling {procedure} ({e.error})")
            return as_error(e)


class _Answer:
    def __init__(self, value: Any) -> None:
        self.value = value


class _NeverLeft(Unavailable):
    """The session went before the call was sent: nothing reached the node."""
