"""``deptcast.send`` and ``deptcast.history``: a thin WAMP adapter over the node's
:class:`~components.service.messaging.MessageService`, which it starts and shares with the
web transport's resources."""

from autobahn.wamp.types import PublishOptions, RegisterOptions
from twisted.internet import reactor, task
from twisted.internet.defer import inlineCallbacks

from components.core import names
from components.core.history import DEFAULT_PAGE
from components.core.settings import Settings
from components.service.messaging import MessageService
from components.service.runtime import runtime
from components.store import open_store
from components.store.threaded import StoreUnavailable, ThreadedStore
from components.wamp.base import NodeComponent, client_errors
from components.wamp.callers import Callers
from components.wamp.linkgate import LinkGate


#: seconds between two attempts to open the store's schema while it is unavailable
MIGRATE_RETRY = 2.0


class ApiComponent(NodeComponent):
    """Opens the store, registers the client procedures and publishes every accepted message."""

    who = "api"
    _store = None

    async def start(self, settings: Settings) -> None:
        self._callers = Callers(self)
        store = open_store(settings.db, settings.store_timeout)
        self._store = ThreadedStore(store, reactor, writers=4 if settings.db_is_postgres else 1,
                                    readers=4 if settings.db_is_postgres else 2, timeout=settings.store_timeout,
                                    unavailable_errors=store.unavailable_errors)
        await self.subscribe(self._callers.forget, "wamp.session.on_leave")
        # a cluster node holds sends until its peers' links to it are up (see components.wamp.linkgate)
        self._gate = LinkGate(self, settings.node_name, settings.peers, settings.link_wait, reactor)
        await self._gate.start()
        self._messages = MessageService(settings, self._store, self._publish, self._gate)
        opts = RegisterOptions(details_arg="details")
        await self.register(self.send, names.PROC_SEND, options=opts)
        await self.register(self.history, names.PROC_HISTORY, options=opts)
        runtime().messages.set(self._messages)
        self.log.info("deptcast api: send and history ready on node {node}", node=settings.node_name)
        # the schema in the background: a store that is down at start must not keep the node
        # from serving (its callers hear deptcast.error.unavailable until the store is ready)
        self._migration = task.LoopingCall(self._migrate)
        self._migration.start(MIGRATE_RETRY, now=True)

    @inlineCallbacks
    def _migrate(self):
        try:
            version = yield self._store.migrate()
        except StoreUnavailable:
            return  # logged once by the store; tried again in MIGRATE_RETRY seconds
        self._migration.stop()
        self._messages.store_ready = True
        settings = self.settings
        self.log.info("deptcast api: store ready ({kind}, schema version {version})",
                      kind="postgresql" if settings.db_is_postgres else f"sqlite {settings.db}", version=version)

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

    def _publish(self, topic: str, envelope):
        return self.publish(topic, envelope, options=PublishOptions(acknowledge=True))

    @client_errors("deptcast api")
    async def send(self, to=None, message=None, *args, details=None, **kwargs):
        identity = await self._callers.identity(details)
        return await self._messages.send(identity, to, message)

    @client_errors("deptcast api")
    async def history(self, after=None, limit=DEFAULT_PAGE, latest=False, positions=None, *args, details=None,
                      **kwargs):
        """What the caller may see, oldest first: after the id ``after`` (``latest=True``: the
        newest ``limit`` of those instead of the oldest), or past ``positions``, the last
        ``seq`` the caller has of each of its topics."""
        identity = await self._callers.identity(details)
        return await self._messages.history(identity, after, limit, latest, positions)
