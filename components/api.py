"""``deptcast.send`` and ``deptcast.history``: a thin WAMP adapter over ``messages`` and ``store``."""

import time
from typing import Any, Dict, Optional

from autobahn.twisted.wamp import ApplicationSession
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions, RegisterOptions
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks, returnValue

from components import names
from components.callers import Callers
from components.config import ConfigError, load_settings
from components.errors import INVALID_FRAME, RATE_LIMITED, Refused
from components.linkgate import LinkGate
from components.messages import check_send
from components.ratelimit import RateLimiter
from components.store import ThreadedStore, open_store, parse_after
from components.tokens import Identity

DEFAULT_HISTORY_PAGE = 100


def _wamp_error(e: Refused) -> ApplicationError:
    return ApplicationError(e.uri, e.detail)


class ApiComponent(ApplicationSession):
    """Registers the client procedures and publishes every accepted message."""

    @inlineCallbacks
    def onJoin(self, details):
        try:
            self._settings = load_settings()
        except ConfigError as e:
            self.log.error("deptcast api: cannot start: {error}", error=str(e))
            self.leave("deptcast.error.config", str(e))
            return
        settings = self._settings
        self._limiter = RateLimiter(settings.rate, settings.burst)
        self._callers = Callers(self)
        self._store = ThreadedStore(open_store(settings.db), reactor,
                                    threads_=4 if settings.db_is_postgres else 1)
        version = yield self._store.migrate()
        self.log.info("deptcast api: store ready ({kind}, schema version {version})",
                      kind="postgresql" if settings.db_is_postgres else f"sqlite {settings.db}",
                      version=version)
        yield self.subscribe(self._callers.forget, "wamp.session.on_leave")
        # a cluster node holds sends until its peers' links to it are up (see components.linkgate)
        self._gate = LinkGate(self, settings.node_name, settings.peers, settings.link_wait, reactor)
        yield self._gate.start()
        opts = RegisterOptions(details_arg="details")
        yield self.register(self.send, names.PROC_SEND, options=opts)
        yield self.register(self.history, names.PROC_HISTORY, options=opts)
        yield self.register(self.send_as, names.PROC_SEND_AS)
        self.log.info("deptcast api: send and history ready on node {node}", node=settings.node_name)

    def onLeave(self, details):
        store = getattr(self, "_store", None)
        if store is not None:
            store.close()
        super().onLeave(details)

    def _caller(self, details):
        """The identity of the calling session (a Deferred; see :class:`components.callers.Callers`)."""
        return self._callers.identity(details)

    @inlineCallbacks
    def send(self, to=None, message=None, *args, details=None, **kwargs):
        identity = yield self._caller(details)
        envelope = yield self._send(identity, to, message)
        returnValue(envelope)

    @inlineCallbacks
    def send_as(self, user: str, dept: str, role: str, to=None, message=None):
        """The same path as ``send`` for the node's own bridges (legacy endpoint, HTTP API),
        which authenticated the sender themselves."""
        envelope = yield self._send(Identity(user=user, dept=dept, role=role), to, message)
        returnValue(envelope)

    @inlineCallbacks
    def _send(self, identity: Identity, to: Any, message: Any) -> Dict[str, Any]:
        try:
            target = check_send(identity, to, message, self._settings.max_message_bytes)
            if not self._limiter.allow(identity.user, time.monotonic()):
                raise Refused(RATE_LIMITED, f"more than {self._settings.burst} messages in a burst; "
                                            f"slow down to {self._settings.rate:g} per second")
        except Refused as e:
            self.log.info("deptcast api: refused a send by {user}: {uri}", user=identity.user, uri=e.uri)
            raise _wamp_error(e)
        if not self._gate.is_open:
            yield self._gate.wait()
        envelope = yield self._store.append(target, identity, message, int(time.time() * 1000))
        yield self.publish(target.topic, envelope, options=PublishOptions(acknowledge=True))
        returnValue(envelope)

    @inlineCallbacks
    def history(self, after=None, limit=DEFAULT_HISTORY_PAGE, latest=False, *args, details=None, **kwargs):
        """What the caller may see after ``after``, oldest first; ``latest=True`` asks for the
        newest ``limit`` of those instead of the oldest (a client with nothing cached)."""
        identity = yield self._caller(details)
        try:
            after_id = parse_after(after)
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
                raise Refused(INVALID_FRAME, "'limit' must be a positive whole number")
            if not isinstance(latest, bool):
                raise Refused(INVALID_FRAME, "'latest' must be true or false")
        except Refused as e:
            raise _wamp_error(e)
        if not self._gate.is_open:
            yield self._gate.wait()
        rows = yield self._store.history(identity, after_id, min(limit, self._settings.history_limit), latest)
        returnValue(rows)
