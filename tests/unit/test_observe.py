"""Store calls as metrics (``components.store.observe``): a duration for every call that ran,
and its failure by kind, unless the failure is an answer."""

from twisted.python.failure import Failure

from components.core.metrics import REGISTRY
from components.core.retention import PrunedHistory
from components.store.observe import observe, observe_deadline


class Down(Exception):
    """What a store raises when it is down."""


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, {"operation": "observed", **labels}) or 0.0


def counts():
    return (sample("deptcast_store_operation_seconds_count"),
            *(sample("deptcast_store_errors_total", kind=kind) for kind in ("deadline", "unavailable", "error")))


def failure(error: Exception) -> Failure:
    try:
        raise error
    except Exception:
        return Failure()


def test_each_outcome_is_counted_as_what_it_is():
    before = counts()
    observe("observed", 0.01, {"id": "1"})                                    # an answer
    observe("observed", 0.02, failure(PrunedHistory({"deptcast.all": 4})))   # an answer too
    observe("observed", 0.03, failure(Down("gone")), unavailable_errors=(Down,))
    observe("observed", 0.04, failure(ValueError("a bug")), unavailable_errors=(Down,))
    observe_deadline("observed")
    after = counts()
    assert [a - b for a, b in zip(after, before)] == [4, 1, 1, 1]
