"""The store probe: one cheap round trip per pool every few seconds, so that a store that went
away (or came back) shows in ``/health`` without a client call."""

from typing import Any, Optional

from twisted.internet import defer, task
import txaio

from components.service.slot import Slot

txaio.use_twisted()  # a Twisted module: its txaio loggers are Twisted's

#: seconds between two store probes (one cheap round trip per pool)
PROBE_INTERVAL = 5.0
#: seconds between two looks until the store is ready and probed once (a node's start)
PROBE_FIRST = 0.5


class StoreProbe:
    """Asks the store for one cheap round trip per pool every ``interval`` seconds, so that a
    store that went away (or came back) shows in ``/health`` without a client call.

    :param messages: the runtime's slot of the message service (the probe follows restarts)
    """

    log = txaio.make_logger()

    def __init__(self, messages: Slot, clock: Any, interval: float = PROBE_INTERVAL) -> None:
        self._messages = messages
        self._loop = task.LoopingCall(self._probe)
        self._loop.clock = clock
        self._interval = interval

    def start(self) -> None:
        # often until the first probe (so /health knows both pools soon after the start), then seldom
        self._loop.start(min(PROBE_FIRST, self._interval), now=False)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def _probe(self) -> Optional[defer.Deferred]:
        service = self._messages.value
        if service is None or not service.store_ready:
            return None  # the root retries its migration meanwhile, which tells the same
        self._loop.interval = self._interval
        # failures are the store's state, logged by the store once per change
        return service.store.probe().addErrback(lambda f: None)
