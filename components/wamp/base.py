"""What every deptcast router component shares: the settings at join, and errors that never
leak internals to a client."""

import functools
from typing import Any, Callable, Dict, List, Optional, Set

from autobahn.twisted.wamp import ApplicationSession
from autobahn.wamp.exception import ApplicationError
from twisted.internet import defer

from components.core.errors import CONFIG, UNAVAILABLE, Refused
from components.core.logsummary import ERROR_PREFIX
from components.core.settings import Settings
from components.service.runtime import runtime
from components.upstream import sessions


class NodeComponent(ApplicationSession):
    """A router component of the node: reads the settings when it joins, and leaves with
    ``deptcast.error.config`` (which stops the node's start) when they are bad.

    Subclasses implement :meth:`start`.
    """

    #: how the component calls itself in log lines
    who = "component"

    @defer.inlineCallbacks
    def onJoin(self, details):
        settings = runtime().settings_or_log(self.log, self.who)
        if settings is None:
            yield self.leave(CONFIG, "a setting is missing or malformed; see the node's log")
            return
        self.settings = settings
        yield defer.maybeDeferred(self.start, settings)
        runtime().health.joined(self.who)

    def onLeave(self, details):
        runtime().health.left(self.who)
        super().onLeave(details)

    def start(self, settings: Settings) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def follow_meta(self, handler: Callable[..., Any], topic: str) -> Any:
        """Follow the router's meta events on ``topic`` (``wamp.session.on_join`` ...): heard
        in-process where the patch ``sessions.meta_local`` is applied, else subscribed.

        :rtype: Deferred
        """
        if sessions.follow(self, handler, topic):
            return defer.succeed(None)
        return self.subscribe(handler, topic)

    def onUserError(self, fail: Any, msg: str) -> None:
        # Autobahn logs a warning for every error a procedure answers; a deptcast.error.* is
        # a refusal, an answer like any other, counted and summarised where it is decided
        # (components.service.refusals): a flood must not write a line per refused call
        value = getattr(fail, "value", None)
        if isinstance(value, ApplicationError) and value.error.startswith(ERROR_PREFIX):
            return
        super().onUserError(fail, msg)


def client_errors(log_prefix: str) -> Callable:
    """Decorate a procedure so that a client only ever sees the contract's errors.

    :class:`Refused` becomes an ``ApplicationError`` with its URI and reason; any other
    failure is logged here and answered ``deptcast.error.unavailable`` (never
    ``wamp.error.runtime_error``, whose text would carry internals).
    """
    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(self, *args, **kwargs):
            d = defer.maybeDeferred(fn, self, *args, **kwargs)

            def translate(failure):
                if failure.check(ApplicationError):
                    return failure
                if failure.check(Refused):
                    refusal = failure.value
                    extra = {"retry_after": refusal.retry_after} if refusal.retry_after is not None else {}
                    raise ApplicationError(refusal.uri, refusal.detail, **extra)
                self.log.failure(f"{log_prefix}: {fn.__name__} failed", failure=failure)
                raise ApplicationError(UNAVAILABLE, "the node cannot answer right now; retry shortly", retry_after=2)
            return d.addErrback(translate)
        return wrapper
    return decorate


@defer.inlineCallbacks
def scan_sessions(session: Any, roles: Optional[List[str]], known: Callable[[int], bool],
                  left: Set[int], found: Callable[[Dict[str, Any]], None]):
    """Call ``found(info)`` for every session that joined before now, as the meta API
    describes it: the start scan of a component that follows sessions from their join and
    leave events.

    :param roles: only sessions of these authroles (``None``: all)
    :param known: whether the caller has a session already (from a join event that came first)
    :param left: the sessions that left while the scan runs (the caller's leave handler adds
        to it meanwhile): they are skipped, whenever they left
    """
    ids = yield (session.call("wamp.session.list", roles) if roles is not None else session.call("wamp.session.list"))
    for sid in ids:
        if sid in left or known(sid):
            continue
        try:
            info = yield session.call("wamp.session.get", sid)
        except ApplicationError:
            continue  # left in the meantime
        if sid not in left:
            found(info)
