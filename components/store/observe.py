"""Store operations as metrics: how long each took and how it failed (see
:mod:`components.core.metrics`). :class:`~components.store.threaded.ThreadedStore` calls
:func:`observe` once per call that ran, when its answer comes (late answers included), and
:func:`observe_deadline` when a call's deadline passes."""

from typing import Any, Tuple, Type

from twisted.python.failure import Failure

from components.core.metrics import STORE_ERRORS, STORE_GROUP_SIZES, STORE_SECONDS
from components.core.retention import PrunedHistory


#: messages per group commit
GROUP_SIZES = STORE_GROUP_SIZES


def observe_deadline(operation: str) -> None:
    """Record a call whose deadline passed (its caller was answered ``unavailable``)."""
    STORE_ERRORS.labels(operation, "deadline").inc()


def observe(operation: str, seconds: float, outcome: Any,
            unavailable_errors: Tuple[Type[BaseException], ...] = ()) -> None:
    """Record one store call: its duration, and its failure unless it is an answer (a history
    request that reaches past retention is an answer, not a store error)."""
    STORE_SECONDS.labels(operation).observe(seconds)
    if isinstance(outcome, Failure) and not outcome.check(PrunedHistory):
        kind = "unavailable" if unavailable_errors and outcome.check(*unavailable_errors) else "error"
        STORE_ERRORS.labels(operation, kind).inc()
