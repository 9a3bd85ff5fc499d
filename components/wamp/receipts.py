"""``deptcast.ack``, ``deptcast.receipts``, ``deptcast.recipients``, ``deptcast.roster`` and
the roster's operator procedures: a thin WAMP adapter over
:class:`~components.service.receipts.ReceiptService` and
:class:`~components.service.roster.RosterService`.

It also records sign-ins for the roster: every WAMP session of the ``member`` role that
joins (the meta API's ``wamp.session.on_join``; legacy sockets are recorded by the legacy
endpoint), into the runtime's :class:`~components.service.roster.SignIns`, written in bulk.
"""

from typing import Any, Dict, Generator, Optional, Tuple

from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import RegisterOptions
from twisted.internet import defer, task

from components.core import names
from components.core.errors import NOT_AUTHORIZED, UNAVAILABLE, Refused
from components.core.ratelimit import RateLimiter
from components.core.settings import Settings
from components.core.tokens import Identity
from components.service import receipts as receipts_service, roster as roster_service
from components.service.receipts import ReceiptService
from components.service.roster import RosterService
from components.service.runtime import runtime
from components.wamp.base import NodeComponent, client_errors
from components.wamp.callers import Callers

#: seconds a call waits for the message service (and its store) while the root (re)starts it
READY_TIMEOUT = 10.0
#: questions about receipts a user may ask, as a multiple of its history calls' rate and burst
QUESTION_FACTOR = 3


class ReceiptsComponent(NodeComponent):
    """Registers the receipts and roster procedures; records members' sign-ins."""

    who = "receipts"

    async def start(self, settings: Settings) -> None:
        rt = runtime()
        self._callers = Callers(self)
        self.roster = RosterService(self._store, rt.signins)
        # questions about receipts are paced like history calls (each reads the store), with
        # room for a page that asks about its user's 20 newest notices when it connects
        self.receipts = ReceiptService(self._store, rt.receipts, self._publish, self._followed,
                                       questions=RateLimiter(settings.history_rate * QUESTION_FACTOR,
                                                             settings.history_burst * QUESTION_FACTOR))
        await self.follow_meta(self._callers.forget, "wamp.session.on_leave")
        await self.follow_meta(self._on_join, "wamp.session.on_join")
        opts = RegisterOptions(details_arg="details")
        for procedure, fn in ((names.PROC_ACK, self.ack), (names.PROC_RECEIPTS, self.counts),
                              (names.PROC_RECIPIENTS, self.recipients), (names.PROC_ROSTER, self.roster_of),
                              (names.PROC_ADMIN_ROSTER_IMPORT, self.roster_import),
                              (names.PROC_ADMIN_ROSTER_REMOVE, self.roster_remove)):
            await self.register(fn, procedure, options=opts)
        self._loops = [task.LoopingCall(self.roster.flush), task.LoopingCall(self.receipts.flush),
                       task.LoopingCall(self.receipts.update_live)]
        for loop, every in zip(self._loops, (roster_service.FLUSH_EVERY, receipts_service.FLUSH_EVERY,
                                             receipts_service.LIVE_EVERY)):
            loop.start(every, now=False).addErrback(self._loop_failed)
        self.log.info("deptcast receipts: receipts and roster ready on node {node}", node=settings.node_name)

    def _loop_failed(self, failure: Any) -> None:
        self.log.failure("deptcast receipts: a flush loop stopped", failure=failure)

    def onLeave(self, details):
        for loop in getattr(self, "_loops", ()):
            if loop.running:
                loop.stop()
        super().onLeave(details)

    @defer.inlineCallbacks
    def _store(self):
        service = yield runtime().messages.get(READY_TIMEOUT)
        if not service.store_ready:
            raise Refused(UNAVAILABLE, "the node is starting: its store is not ready yet; retry in a few seconds",
                          retry_after=2)
        return service.store

    def _publish(self, topic: str, counts: Dict[str, Any]):
        return self.publish(topic, counts)

    @defer.inlineCallbacks
    def _followed(self, topic: str):
        """Whether anyone follows ``topic``: a client of this node, or a peer's link for a
        client of its own (links subscribe exactly what their node's clients need)."""
        subscription = yield self.call("wamp.subscription.lookup", topic)
        return subscription is not None

    def _on_join(self, info: Dict[str, Any], *args, **kwargs) -> None:
        """A session joined: a member's goes on the roster (not publishers', admins' or backends')."""
        if not isinstance(info, dict) or info.get("authrole") != names.MEMBER:
            return
        dept, user = (info.get("authextra") or {}).get("dept"), info.get("authid")
        if names.is_name(dept) and names.is_name(user) and dept != names.ALL:
            runtime().signins.signed_in(dept, user)

    @defer.inlineCallbacks
    def _caller(self, details) -> Generator[Any, Any, Tuple[Optional[Identity], bool]]:
        """The caller's identity, and whether it is an admin (the procedures here need an
        admin's department only for its own receipts)."""
        try:
            identity = yield self._callers.identity(details)
        except ApplicationError:
            if details.caller_authrole == names.ADMIN:
                return None, True  # a node whose callers do not read an admin's department yet
            raise
        return identity, identity.role == names.ADMIN

    def ack(self, ids=None, state=None, *args, details=None, **kwargs):
        """The caller's receipts: ``state`` (``delivered`` or ``seen``) for ``ids``; ids it
        may not see, or whose audience it is not in, are ignored (when written). Every
        session calls it about once a second: a caller already known is answered at once,
        without a Deferred."""
        identity = self._callers.known(details.caller) if details is not None else None
        if identity is None:
            return self._ack_first(ids, state, details=details)
        try:
            self.receipts.ack(identity, ids, state)
        except Refused as e:
            raise ApplicationError(e.uri, e.detail) from None
        return None

    @client_errors("deptcast receipts")
    @defer.inlineCallbacks
    def _ack_first(self, ids, state, details=None):
        identity, is_admin = yield self._caller(details)
        if identity is not None:
            self.receipts.ack(identity, ids, state)
        return None

    @client_errors("deptcast receipts")
    @defer.inlineCallbacks
    def counts(self, envelope_id=None, *args, details=None, **kwargs):
        identity, is_admin = yield self._caller(details)
        answer = yield self.receipts.receipts(identity, is_admin, envelope_id)
        return answer

    @client_errors("deptcast receipts")
    @defer.inlineCallbacks
    def recipients(self, envelope_id=None, state=None, after=None, limit=None, *args, details=None, **kwargs):
        identity, is_admin = yield self._caller(details)
        answer = yield self.receipts.recipients(identity, is_admin, envelope_id, state, after, limit)
        return answer

    @client_errors("deptcast roster")
    @defer.inlineCallbacks
    def roster_of(self, dept=None, *args, details=None, **kwargs):
        identity, is_admin = yield self._caller(details)
        answer = yield self.roster.roster(identity, is_admin, dept)
        return answer

    @defer.inlineCallbacks
    def _admin_only(self, details):
        _, is_admin = yield self._caller(details)
        if not is_admin:  # the router refuses others first; this holds should its rules change
            raise ApplicationError(NOT_AUTHORIZED, "the roster's operator procedures take an admin token")

    @client_errors("deptcast roster")
    @defer.inlineCallbacks
    def roster_import(self, rows=None, *args, details=None, **kwargs):
        yield self._admin_only(details)
        answer = yield self.roster.import_rows(rows)
        return answer

    @client_errors("deptcast roster")
    @defer.inlineCallbacks
    def roster_remove(self, user_key=None, *args, details=None, **kwargs):
        yield self._admin_only(details)
        answer = yield self.roster.remove(user_key)
        return answer
