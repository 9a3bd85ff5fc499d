"""Unit tests of :mod:`components.wamp.base`: :func:`client_errors` (a client sees the
contract's error URIs and nothing of the node's internals) and :class:`NodeComponent`'s
start (the settings, or a leave with ``deptcast.error.config``)."""

from typing import Any, List

from autobahn.wamp.exception import ApplicationError
from twisted.internet import defer, task
from twisted.trial.unittest import SynchronousTestCase

from components.core.errors import CONFIG, RATE_LIMITED, UNAVAILABLE, Refused
from components.core.settings import ConfigError, Settings
from components.service.runtime import Runtime
from components.wamp import base
from components.wamp.base import NodeComponent, client_errors
from tests.support.fakes import RecordingLog, make_settings

INTERNAL = "psycopg.OperationalError: connection to server at 10.1.2.3, port 5432 failed"


class Procedures:
    def __init__(self) -> None:
        self.log = RecordingLog()
        self.later: defer.Deferred = defer.Deferred()

    @client_errors("deptcast test")
    def answer(self, x: Any, details: Any = None) -> Any:
        return {"x": x, "details": details}

    @client_errors("deptcast test")
    def refuse(self) -> None:
        raise Refused(RATE_LIMITED, "slow down")

    @client_errors("deptcast test")
    async def refuse_async(self) -> None:
        raise Refused(RATE_LIMITED, "slow down, async")

    @client_errors("deptcast test")
    def contract_error(self) -> None:
        raise ApplicationError("wamp.error.no_such_session", "gone")

    @client_errors("deptcast test")
    async def crash(self) -> None:
        raise RuntimeError(INTERNAL)

    @client_errors("deptcast test")
    def crash_later(self) -> defer.Deferred:
        return self.later


class ClientErrorsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.p = Procedures()

    def test_a_result_passes_through_with_its_arguments(self):
        self.assertEqual(self.successResultOf(self.p.answer(1, details="d")), {"x": 1, "details": "d"})
        self.assertEqual(Procedures.answer.__name__, "answer")

    def test_a_refusal_becomes_an_application_error_with_its_uri_and_reason(self):
        for d, detail in ((self.p.refuse(), "slow down"), (self.p.refuse_async(), "slow down, async")):
            error = self.failureResultOf(d, ApplicationError).value
            self.assertEqual((error.error, error.args, error.kwargs), (RATE_LIMITED, (detail,), {}))
        self.assertEqual(self.p.log.records, [])

    def test_an_application_error_passes_unchanged(self):
        error = self.failureResultOf(self.p.contract_error(), ApplicationError).value
        self.assertEqual((error.error, error.args), ("wamp.error.no_such_session", ("gone",)))

    def test_an_unexpected_failure_is_unavailable_without_internals_and_logged(self):
        crash, later = self.p.crash(), self.p.crash_later()
        self.assertNoResult(later)
        self.p.later.errback(RuntimeError(INTERNAL))
        for d in (crash, later):
            error = self.failureResultOf(d, ApplicationError).value
            self.assertEqual(error.error, UNAVAILABLE)
            self.assertNotIn("10.1.2.3", repr(error) + str(error.args) + str(error.kwargs))
            self.assertNotIn("RuntimeError", repr(error))
        self.assertEqual([(r.level, r.format) for r in self.p.log.records],
                         [("failure", "deptcast test: crash failed"), ("failure", "deptcast test: crash_later failed")])
        self.assertTrue(all(r.fields["failure"].check(RuntimeError) for r in self.p.log.records))


class Started(NodeComponent):
    who = "tester"

    def start(self, settings: Settings) -> None:
        self.started_with = settings


class NodeComponentTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.runtime = Runtime(clock=task.Clock())
        self.patch(base, "runtime", lambda: self.runtime)
        self.component = Started()
        self.component.log = RecordingLog()
        self.left: List[Any] = []
        self.component.leave = lambda reason=None, message=None: self.left.append((reason, message))

    def test_starts_with_the_settings(self):
        self.runtime._settings = make_settings()
        self.successResultOf(self.component.onJoin(None))
        self.assertIs(self.component.started_with, self.runtime._settings)
        self.assertIs(self.component.settings, self.runtime._settings)
        self.assertEqual(self.left, [])

    def test_bad_settings_leave_with_the_config_error_and_say_why(self):
        self.runtime._error = ConfigError("DEPTCAST_BURST='many' is not a number")
        self.successResultOf(self.component.onJoin(None))
        self.assertFalse(hasattr(self.component, "started_with"))
        self.assertEqual([reason for reason, _ in self.left], [CONFIG])
        self.assertEqual(self.component.log.lines("error"),
                         ["deptcast tester: cannot start: DEPTCAST_BURST='many' is not a number"])
