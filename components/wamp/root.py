"""The node's composition root: the first router component of the node config, which puts
together what the whole router worker shares, before anything else starts.

Crossbar starts a router worker's realm (and its roles), then its components one after the
other, each once the previous one has joined, and only then its transports and router links
(``crossbar/node/node.py``, ``_configure_native_worker_router``). Listed first, this component
therefore runs before any other component joins and before any transport listens. It

1. installs every patch of :mod:`components.upstream` (the only place that does): the
   guards of the web transport (request bodies, WAMP JSON nesting) hold for every path, whichever
   resources the node config mounts; the router, the authorizer function and the link state are
   passed in;
2. opens the store and makes its schema (in the background: a store that is down at start does
   not keep the node from serving; callers hear ``deptcast.error.unavailable`` meanwhile);
3. builds the node's :class:`~components.service.messaging.MessageService`, with the
   :class:`~components.wamp.linkgate.LinkGate` that holds sends on a starting cluster node, and
   offers it in ``runtime().messages`` to the WAMP procedures and the web transport's resources;
4. reports the patches' states to ``runtime().health`` (``/health`` lists them).

The node config may name patches to leave out, in this component's ``extra``:
``{"leave_out": ["hotpath.tcp_write"]}`` (to measure what one earns; ``/health`` then says
``skipped``, "left out by the node config").

A second install point, and the last, would be Crossbar proxy workers, should ``/ws`` move
into them: a proxy worker runs no router components, so it would need its own call of
:func:`components.upstream.install` with the patches that apply there.
"""

from typing import Any, Dict, List

import txaio
from twisted.internet import reactor, task
from twisted.internet.defer import inlineCallbacks, succeed

from components.core.frames import frame_cap, wamp_message_cap
from components.core.settings import Settings
from components.service.messaging import MessageService
from components.service.refusals import RefusalLog
from components.service.runtime import runtime
from components.store import open_store
from components.store.threaded import StoreUnavailable, ThreadedStore
from components import upstream
from components.upstream import hotpath
from components.upstream.worker import router_of
from components.wamp import auth
from components.wamp.base import NodeComponent
from components.wamp.linkgate import LinkGate

#: seconds between two attempts to open the store's schema while it is unavailable
MIGRATE_RETRY = 2.0


def install_patches(router: Any, settings: Settings, leave_out: List[str]) -> List[upstream.Status]:
    """Install every upstream patch for this node (see :mod:`components.upstream`), with the
    node's collaborators.

    :param leave_out: patch names the node config asks to leave out
    :rtype: list
    """
    return upstream.install(upstream.Wiring(
        router=router,
        authorize=auth.authorize,
        links=runtime().links,
        peers=tuple(settings.peers),
        # the largest body a resource reads: a batch's JSON, bounded as one WAMP call (a
        # send's and the dev sign-in form's are smaller)
        max_body=max(frame_cap(settings.max_message_bytes), wamp_message_cap(settings.max_message_bytes)),
        auth_timeout=settings.auth_timeout,
        max_authenticating=settings.max_authenticating,
        send_buffer=settings.send_buffer,
        calls_in_flight=settings.calls_in_flight,
        max_subscriptions=settings.max_subscriptions,
        connection_refusals=RefusalLog(txaio.make_logger(), "deptcast ws", "connection", "connections"),
    ), leave_out=leave_out)


class RootComponent(NodeComponent):
    """Installs the upstream patches, opens the store and offers the node's message service."""

    who = "root"
    _store = None

    @inlineCallbacks
    def start(self, settings: Settings):
        extra: Dict[str, Any] = dict(getattr(self.config, "extra", None) or {})
        states = install_patches(router_of(self), settings, list(extra.get("leave_out") or []))
        applied, considered, skipped = upstream.summary(states)
        runtime().health.patches = [s.as_json() for s in states]
        self.log.info("deptcast node: {applied} of {considered} upstream patches applied{skipped}",
                      applied=applied, considered=considered,
                      skipped=f" (not applied: {', '.join(skipped)})" if skipped else "")
        store = open_store(settings.db, settings.store_timeout)
        self._store = ThreadedStore(store, reactor, writers=4 if settings.db_is_postgres else 1,
                                    readers=4 if settings.db_is_postgres else 2, timeout=settings.store_timeout,
                                    unavailable_errors=store.unavailable_errors, around_answers=hotpath.corked,
                                    groups=2)
        # a cluster node holds sends until its peers' links to it are up (see components.wamp.linkgate)
        self._gate = LinkGate(self, settings.node_name, settings.peers, settings.link_wait, reactor)
        yield self._gate.start()
        self._messages = MessageService(settings, self._store, self._publish, self._gate)
        runtime().messages.set(self._messages)
        # the schema in the background: a store that is down at start must not keep the node
        # from serving (its callers hear deptcast.error.unavailable until the store is ready)
        self._migration = task.LoopingCall(self._migrate)
        self._migration.start(MIGRATE_RETRY, now=True)

    @inlineCallbacks
    def _migrate(self):
        assert self._store is not None  # opened before the migration starts
        try:
            version = yield self._store.migrate()
        except StoreUnavailable:
            return  # logged once by the store; tried again in MIGRATE_RETRY seconds
        self._migration.stop()
        self._messages.store_ready = True
        settings = self.settings
        # (the api's store: "store ready" is one of the lines a node's start waits for)
        self.log.info("deptcast api: store ready ({kind}, schema version {version})",
                      kind="postgresql" if settings.db_is_postgres else f"sqlite {settings.db}", version=version)

    def _publish(self, topic: str, envelope):
        # unacknowledged: this session is attached to the router in-process and its role's
        # permissions are static, so the broker has handed the event to every subscriber
        # before publish() returns (an error raises here); a PUBLISHED answer, its Deferred and
        # its trip back through the router per notice told nothing more (a fifth of the router
        # worker's time under publishing, during batches)
        self.publish(topic, envelope)
        return succeed(None)

    def onLeave(self, details):
        migration = getattr(self, "_migration", None)
        if migration is not None and migration.running:
            migration.stop()
        messages = getattr(self, "_messages", None)
        if messages is not None:  # clear(None) would clear whichever service is there
            runtime().messages.clear(messages)
        if self._store is not None:
            self._store.close()
        super().onLeave(details)
