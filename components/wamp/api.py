"""``deptcast.send`` and ``deptcast.history``: a thin WAMP adapter over the node's
:class:`~components.service.messaging.MessageService`, which it starts and shares with the
web transport's resources."""

from autobahn.wamp.types import PublishOptions, RegisterOptions
from twisted.internet import reactor

from components.core import names
from components.core.history import DEFAULT_PAGE
from components.core.settings import Settings
from components.service.messaging import MessageService
from components.service.runtime import runtime
from components.store import open_store
from components.store.threaded import ThreadedStore
from components.wamp.base import NodeComponent, client_errors
from components.wamp.callers import Callers
from components.wamp.linkgate import LinkGate


class ApiComponent(NodeComponent):
    """Opens the store, registers the client procedures and publishes every accepted message."""

    who = "api"
    _store = None

    async def start(self, settings: Settings) -> None:
        self._callers = Callers(self)
        self._store = ThreadedStore(open_store(settings.db), reactor,
                                    threads_=4 if settings.db_is_postgres else 1)
        version = await self._store.migrate()
        self.log.info("deptcast api: store ready ({kind}, schema version {version})",
                      kind="postgresql" if settings.db_is_postgres else f"sqlite {settings.db}",
                      version=version)
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

    def onLeave(self, details):
        runtime().messages.clear(getattr(self, "_messages", None))
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
