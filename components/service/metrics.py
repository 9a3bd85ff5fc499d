"""The message service's metrics, and the collector that reads the node's state when
Prometheus scrapes (see :mod:`components.core.metrics` for the counters).

- :func:`counted_send` and :func:`timed_history` decorate the
  :class:`~components.service.messaging.MessageService` methods: every interface's sends are
  counted on one path, by the ``interface`` keyword its adapter passes;
- :class:`NodeCollector` answers the gauges from the runtime's
  :class:`~components.service.nodehealth.NodeHealth`: sessions, links, subscribers, users online,
  the link hold, the router's events, and CPU and memory of the node's processes.
"""

import functools
import os
import time
from typing import Any, Callable, Iterable, Optional

import psutil
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from twisted.internet import defer
from twisted.python.failure import Failure

from components.core.errors import Refused
from components.core.metrics import (EVENTS_PUBLISHED, HISTORY_SECONDS, REGISTRY, SENDS_ACCEPTED, SENDS_REFUSED,
                                     reason_of)


def counted_send(fn: Callable) -> Callable:
    """Count each send: accepted (and published, by topic kind) or refused by reason, per
    ``interface`` (``wamp`` unless the caller says ``legacy`` or ``http``)."""
    @functools.wraps(fn)
    def send(self, identity, to, message, key=None, interface: str = "wamp") -> defer.Deferred:
        def accepted(envelope):
            SENDS_ACCEPTED.labels(interface).inc()
            EVENTS_PUBLISHED.labels(envelope.get("scope", "other")).inc()
            return envelope

        def refused(failure):
            SENDS_REFUSED.labels(interface, reason_of(failure.value.uri) if failure.check(Refused)
                                 else "unavailable").inc()
            return failure
        return defer.maybeDeferred(fn, self, identity, to, message, key).addCallbacks(accepted, refused)
    return send


def timed_history(fn: Callable) -> Callable:
    """Time each history call, by outcome (``ok`` or ``refused``)."""
    @functools.wraps(fn)
    def history(self, *args, **kwargs) -> defer.Deferred:
        started = time.monotonic()

        def done(result):
            outcome = "refused" if isinstance(result, Failure) else "ok"
            HISTORY_SECONDS.labels(outcome).observe(time.monotonic() - started)
            return result
        return defer.maybeDeferred(fn, self, *args, **kwargs).addBoth(done)
    return history


def _cpu_and_memory(pid: int):
    try:
        process = psutil.Process(pid)
        with process.oneshot():
            times = process.cpu_times()
            return times.user + times.system, process.memory_info().rss
    except psutil.Error:
        return None


class NodeCollector:
    """The gauges of a node, read at scrape time.

    :param runtime: the router worker's :class:`~components.service.runtime.Runtime`
    :param controller_pid: the Crossbar controller's process id (the router worker's parent)
    """

    def __init__(self, runtime: Any, controller_pid: Optional[int] = None) -> None:
        self._runtime = runtime
        self._controller_pid = controller_pid if controller_pid is not None else os.getppid()

    def describe(self) -> Iterable:
        return []  # read at scrape time only (the registry must not call collect() early)

    def collect(self) -> Iterable:
        health = self._runtime.health
        observer = health.observer
        sessions = GaugeMetricFamily("deptcast_sessions", "Connected client sessions, by kind (wamp, legacy).",
                                     labels=["kind"])
        for kind, count in health.sessions().items():
            sessions.add_metric([kind], count)
        yield sessions

        settings = self._settings()
        service = self._runtime.messages.value
        up = GaugeMetricFamily("deptcast_up", "1 while the node serves clients (as /health/serving), else 0.")
        healthy = GaugeMetricFamily("deptcast_healthy", "1 while /health answers 200 (serving, every link up).")
        if settings is not None:
            verdict = health.verdict(settings, service)
            up.add_metric([], 1 if verdict.serving else 0)
            healthy.add_metric([], 1 if verdict.healthy else 0)
        yield up
        yield healthy

        store = GaugeMetricFamily("deptcast_store_up", "1 while the store answers, by pool (writes, reads); "
                                                       "absent before the first call.", labels=["pool"])
        if service is not None:
            for pool, state in service.store.states.items():
                if state is not None:
                    store.add_metric([pool], 1 if state else 0)
        yield store

        links = GaugeMetricFamily("deptcast_link_up", "1 while the link with a peer is up, by peer and direction "
                                                      "(in: the peer's link here; out: this node's link to it).",
                                  labels=["peer", "direction"])
        if settings is not None:
            links_in = observer.links_in() if observer is not None else set()
            links_out = observer.links_out() if observer is not None else set()
            for peer in settings.peers:
                links.add_metric([peer, "in"], 1 if peer in links_in else 0)
                links.add_metric([peer, "out"], 1 if peer in links_out else 0)
        yield links

        hold = GaugeMetricFamily("deptcast_link_hold_seconds",
                                 "How long the node held sends after its start until its peers' links were up.")
        if service is not None and getattr(service.gate, "opened_after", None) is not None:
            hold.add_metric([], service.gate.opened_after)
        yield hold

        users = GaugeMetricFamily("deptcast_users_online",
                                  "Distinct users (department, user id) with a WAMP session on this node.")
        subscribers = GaugeMetricFamily("deptcast_subscribers",
                                        "Client subscriptions on this node, by topic kind.", labels=["kind"])
        events = CounterMetricFamily("deptcast_router_events_sent",
                                     "EVENT messages the router sent to any session (clients, peers' links, the "
                                     "node's own components) since it started.")
        if observer is not None:
            users.add_metric([], observer.users_online())
            for kind, count in sorted(observer.subscribers().items()):
                subscribers.add_metric([kind], count)
            sent = observer.router_events_sent()
            if sent is not None:
                events.add_metric([], sent)
        yield users
        yield subscribers
        yield events

        cpu = CounterMetricFamily("deptcast_process_cpu_seconds", "CPU time of the node's processes, by process.",
                                  labels=["process"])
        memory = GaugeMetricFamily("deptcast_process_resident_memory_bytes",
                                   "Resident memory of the node's processes, by process.", labels=["process"])
        for name, pid in (("router", os.getpid()), ("controller", self._controller_pid)):
            measured = _cpu_and_memory(pid)
            if measured is not None:
                cpu.add_metric([name], measured[0])
                memory.add_metric([name], measured[1])
        yield cpu
        yield memory

        started = GaugeMetricFamily("deptcast_start_time_seconds", "When the router worker started (Unix time).")
        started.add_metric([], time.time() - (self._runtime.clock.seconds() - health.started))
        yield started

    def _settings(self):
        try:
            return self._runtime.settings()
        except Exception:
            return None


_registered: Optional[NodeCollector] = None


def register_collector(runtime: Any) -> NodeCollector:
    """Register the node's collector once per process (the metrics resource asks for it).

    :rtype: NodeCollector
    """
    global _registered
    if _registered is None:
        _registered = NodeCollector(runtime)
        REGISTRY.register(_registered)
    return _registered
