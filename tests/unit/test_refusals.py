"""The refusal log adapter (:mod:`components.service.refusals`) on a fake clock, and the send
path's use of it (:class:`components.service.messaging.MessageService`)."""

from typing import Any, Dict, List

import pytest
from twisted.internet import defer, task
from twisted.logger import Logger, formatEvent, globalLogPublisher
from twisted.python.failure import Failure

from components.core.errors import Refused
from components.core.settings import Settings
from components.core.tokens import Identity
from components.service.messaging import RATE_LIMITED_PACE, MessageService
from components.service.refusals import RefusalLog


class Lines:
    """A log observer that keeps each event's text (and whether it carries a traceback)."""

    def __init__(self) -> None:
        self.events: List[Dict[str, Any]] = []

    def __call__(self, event: Dict[str, Any]) -> None:
        self.events.append(event)

    @property
    def texts(self) -> List[str]:
        return [formatEvent(e) for e in self.events]

    @property
    def tracebacks(self) -> int:
        return sum(1 for e in self.events if "log_failure" in e)


@pytest.fixture
def lines():
    return Lines()


def test_a_flood_writes_one_line_per_reason_and_one_summary_per_10_s(lines):
    clock = task.Clock()
    log = RefusalLog(Logger(observer=lines), "deptcast messages", "send", "sends", clock)
    for _ in range(1700):
        log.refused("deptcast.error.rate_limited", "cardio_mallory", "more than 50 messages in a burst")
        clock.advance(1 / 256)  # exact in binary: the window ends at exactly 10 s
    for _ in range(12):
        log.refused("deptcast.error.invalid_frame", "cardio_eve", "'to' is missing")
    assert lines.texts == [
        "deptcast messages: refused a send by cardio_mallory: rate_limited (more than 50 messages in a burst); "
        "further refusals are counted and summarised every 10 s",
        "deptcast messages: refused a send by cardio_eve: invalid_frame ('to' is missing); "
        "further refusals are counted and summarised every 10 s"]
    clock.advance(10 - 1700 / 256)
    assert lines.texts[2:] == ["deptcast messages: refused 1,712 sends in the last 10 s: 1,700 rate_limited, "
                               "12 invalid_frame; most by cardio_mallory (1,700), cardio_eve (12)"]
    # quiet: one more window, no line, then the timer stops
    clock.advance(10)
    assert len(lines.texts) == 3
    assert clock.getDelayedCalls() == []
    # a new spell: its first refusal has a line again
    log.refused("deptcast.error.rate_limited", "cardio_mallory")
    assert lines.texts[3].startswith("deptcast messages: refused a send by cardio_mallory: rate_limited;")


def test_an_article_fits_the_noun(lines):
    clock = task.Clock()
    RefusalLog(Logger(observer=lines), "deptcast http api", "HTTP request", "HTTP requests", clock).refused(
        "deptcast.error.invalid_token", "10.0.0.9")
    assert lines.texts[0].startswith("deptcast http api: refused an HTTP request by 10.0.0.9: invalid_token;")


def test_unexpected_failures_log_one_traceback_per_spell_and_are_counted(lines):
    clock = task.Clock()
    log = RefusalLog(Logger(observer=lines), "deptcast messages", "send", "sends", clock)
    for _ in range(343):
        log.failed(Failure(KeyError("boom")), "cardio_ann")
    assert lines.tracebacks == 1
    clock.advance(10)
    assert lines.texts[-1] == ("deptcast messages: refused 343 sends in the last 10 s: "
                               "343 internal_error:KeyError; most by cardio_ann (343)")


# -- the send path counts every interface's refusals in one place


class FailingStore:
    """A store whose append raises what it is given (the message service's view of a bug)."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def append_many(self, *args, **kwargs):
        return defer.fail(self.error)


@pytest.fixture
def service_lines():
    """What the message service logs (it logs to the global publisher)."""
    lines = Lines()

    def observe(event):
        if event.get("log_namespace", "").startswith("components.service"):
            lines(event)
    globalLogPublisher.addObserver(observe)
    yield lines
    globalLogPublisher.removeObserver(observe)


def service(clock: task.Clock, store: Any = None, rate: float = 1.0, burst: int = 1) -> MessageService:
    settings = Settings(db=":memory:", jwt_secret="s" * 32, node_dir=None, rate=rate, burst=burst)
    svc = MessageService(settings, store, publish=lambda topic, env: defer.succeed(None),
                         monotonic=clock.seconds, clock=clock)
    svc.store_ready = True
    return svc


def test_the_send_path_counts_refusals_instead_of_a_line_each(service_lines):
    lines = service_lines
    clock = task.Clock()
    svc = service(clock, store=FailingStore(Refused("deptcast.error.unavailable", "store down")))
    ann = Identity("ann", "cardio")
    errors = []
    for _ in range(50):
        svc.send(ann, "cardio", "hi").addErrback(lambda f: errors.append(f.value.uri))
    clock.advance(RATE_LIMITED_PACE)
    assert errors == ["deptcast.error.unavailable"] + ["deptcast.error.rate_limited"] * 49
    assert len(lines.texts) == 2  # the first of each reason
    clock.advance(10 - RATE_LIMITED_PACE)
    assert lines.texts[-1] == ("deptcast messages: refused 50 sends in the last 10 s: 49 rate_limited, "
                               "1 unavailable; most by cardio_ann (50)")


def test_an_unexpected_failure_of_the_send_path_is_answered_unavailable_with_one_traceback(service_lines):
    lines = service_lines
    clock = task.Clock()
    svc = service(clock, store=FailingStore(KeyError("bug")), rate=0)
    errors = []
    for _ in range(20):
        svc.send(Identity("ann", "cardio"), "cardio", "hi").addErrback(lambda f: errors.append(f.value))
    assert [(e.uri, e.retry_after) for e in errors] == [("deptcast.error.unavailable", 2)] * 20
    assert "bug" not in errors[0].detail
    assert lines.tracebacks == 1


def test_a_rate_limited_call_is_answered_after_a_pause_other_refusals_at_once():
    """A client that calls again as soon as it is refused is paced by the node: in a loop it
    makes a few calls a second, not thousands (bench/fairness.py)."""
    clock = task.Clock()
    svc = service(clock, store=FailingStore(Refused("deptcast.error.unavailable", "store down")), rate=1, burst=1)
    ann = Identity("ann", "cardio")
    answers = []
    svc.send(ann, "cardio", "hi").addErrback(lambda f: answers.append(f.value.uri))
    svc.send(ann, "oncology", "not my department").addErrback(lambda f: answers.append(f.value.uri))
    svc.send(ann, "cardio", "too fast").addErrback(lambda f: answers.append(f.value.uri))
    assert answers == ["deptcast.error.unavailable", "deptcast.error.not_authorized"]
    clock.advance(RATE_LIMITED_PACE - 0.01)
    assert len(answers) == 2
    clock.advance(0.01)
    assert answers[2:] == ["deptcast.error.rate_limited"]
