"""Unit tests of :mod:`components.service.storeprobe`: the store probe keeps ``/health``
current without client calls, often at a node's start, then every interval."""

from twisted.internet import defer, task

from components.service.slot import Slot
from components.service.storeprobe import StoreProbe


def test_the_store_probe_asks_often_until_the_store_is_ready_then_every_interval():
    class Store:
        probes = 0

        def probe(self):
            Store.probes += 1
            return defer.succeed(None)

    class Svc:
        store_ready = False
        store = Store()

    clock = task.Clock()
    slot = Slot(clock, "service")
    slot.set(Svc)
    probe = StoreProbe(slot, clock, interval=5.0)
    probe.start()
    clock.advance(0.5)
    assert Store.probes == 0          # not ready: the root's migration tells the store's state
    Svc.store_ready = True
    clock.advance(0.5)
    assert Store.probes == 1          # at once
    clock.advance(3.0)
    assert Store.probes == 1          # then seldom: once per interval
    clock.advance(5.0)
    assert Store.probes == 2
    clock.advance(5.0)
    assert Store.probes == 3
    probe.stop()
