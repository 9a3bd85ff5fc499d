"""``deptcast.send``, ``deptcast.send_batch`` and ``deptcast.history``: a thin WAMP adapter over the node's
:class:`~components.service.messaging.MessageService`, which the node's composition root
(:mod:`components.wamp.root`) builds and offers in ``runtime().messages``."""

from autobahn.wamp.types import RegisterOptions

from components.core import names
from components.core.history import DEFAULT_PAGE
from components.core.settings import Settings
from components.service.runtime import runtime
from components.wamp.base import NodeComponent, client_errors
from components.wamp.callers import Callers

#: seconds a call waits for the message service while the root (re)starts it
READY_TIMEOUT = 10.0


class ApiComponent(NodeComponent):
    """Registers the client procedures over the node's message service."""

    who = "api"

    async def start(self, settings: Settings) -> None:
        self._callers = Callers(self)
        await self.follow_meta(self._callers.forget, "wamp.session.on_leave")
        opts = RegisterOptions(details_arg="details")
        await self.register(self.send, names.PROC_SEND, options=opts)
        await self.register(self.send_batch, names.PROC_SEND_BATCH, options=opts)
        await self.register(self.history, names.PROC_HISTORY, options=opts)
        self.log.info("deptcast api: send, send_batch and history ready on node {node}", node=settings.node_name)

    @client_errors("deptcast api")
    async def send(self, to=None, message=None, key=None, *args, details=None, **kwargs):
        identity = await self._callers.identity(details)
        service = await runtime().messages.get(READY_TIMEOUT)
        return await service.send(identity, to, message, key)

    @client_errors("deptcast api")
    async def send_batch(self, items=None, *args, details=None, **kwargs):
        """Up to 1,000 sends in one call: one result per item, in order (the envelope, or
        ``{"error", "detail"}``)."""
        identity = await self._callers.identity(details)
        service = await runtime().messages.get(READY_TIMEOUT)
        return await service.send_batch(identity, items)

    @client_errors("deptcast api")
    async def history(self, after=None, limit=DEFAULT_PAGE, latest=False, positions=None, *args, details=None,
                      **kwargs):
        """What the caller may see, oldest first: after the id ``after`` (``latest=True``: the
        newest ``limit`` of those instead of the oldest), or past ``positions``, the last
        ``seq`` the caller has of each of its topics."""
        identity = await self._callers.identity(details)
        service = await runtime().messages.get(READY_TIMEOUT)
        return await service.history(identity, after, limit, latest, positions)
