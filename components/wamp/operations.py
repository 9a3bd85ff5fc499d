"""The node's operations component: what ``/health`` and ``/metrics`` need to know of the
router, the background upkeep of the store, the line that says the node is ready, and the
graceful drain when the node is asked to stop.

- **Census**: client sessions, peers' link sessions and client subscriptions, from the
  router's meta events (:class:`~components.core.census.Census`); this node's own links and the
  router's message counts from the router worker (:mod:`components.upstream.worker`). It reports
  into ``runtime().health`` as its :class:`~components.service.nodehealth.Observer`.
- **Upkeep**: the store probe (:class:`~components.service.storeprobe.StoreProbe`) and retention
  (:class:`~components.service.retention.Pruner`).
- **Ready**: once the node serves and its web transport is up with all its paths, one info line
  saying where to connect, the mode, the store and the links.
- **Drain**: on SIGTERM (the signal Crossbar's controller, systemd and ``deptcast run`` stop a
  worker with), before Crossbar's own shutdown: ``/health`` says ``draining``, the web transport
  stops taking connections (a balancer sends new clients elsewhere), every client WAMP session
  gets a GOODBYE with the reason ``wamp.close.system_shutdown`` and every legacy socket a
  WebSocket close 1001 (Going Away). Clients reconnect at once, through the balancer, to
  another node, instead of finding out by a ping timeout or a failed call. Then, once they
  are gone (or after :data:`DRAIN_TIMEOUT` seconds), Crossbar shuts the worker down as usual.
"""

import signal
from typing import Any, Dict, Optional, Set, cast
from urllib.parse import urlsplit

from autobahn.wamp.exception import ApplicationError
from twisted.internet import reactor, task
from twisted.internet.defer import inlineCallbacks
from twisted.internet.interfaces import IReactorThreads

from components.core.census import Census
from components.core import names
from components.core.names import CLIENT_ROLES
from components.core.settings import Settings
from components.service.storeprobe import StoreProbe
from components.service.retention import Pruner, retention_text
from components.service.runtime import runtime
from components.upstream import worker
from components.wamp.base import NodeComponent, scan_sessions

#: the WAMP close reason a stopping node says goodbye with (the WAMP spec's own URI)
SHUTDOWN_REASON = names.CLOSE_GOING_AWAY
SHUTDOWN_MESSAGE = "this node is stopping: reconnect now (to another node)"
#: WebSocket close code and reason for legacy sockets (RFC 6455 1001 Going Away)
GOING_AWAY = 1001
#: most seconds the drain waits for clients to leave before Crossbar's shutdown goes on
DRAIN_TIMEOUT = 5.0
#: how this node's link to peer P is named in its config (components.ops.meshconfig.rlink)
LINK_PREFIX = "to-"
#: seconds between two looks for the ready line
READY_POLL = 0.1


def describe_store(settings: Settings) -> str:
    """The store in words, without credentials.

    :rtype: str
    """
    if not settings.db_is_postgres:
        return f"sqlite {settings.db}"
    url = urlsplit(settings.db)
    return f"postgresql {url.hostname or 'localhost'}:{url.port or 5432}{url.path or ''}"


def connect_text(host: str, port: int) -> str:
    """Where to connect, in the words of the ready line.

    :rtype: str
    """
    shown = "localhost" if host in ("", "0.0.0.0", "::") else host
    base = f"{shown}:{port}"
    return (f"page http://{base}/, WAMP ws://{base}/ws, legacy ws://{base}/webSocket/<dept>_<user>, "
            f"HTTP API http://{base}/api/send, health http://{base}/health, metrics http://{base}/metrics")


class OperationsComponent(NodeComponent):
    """Counts sessions and links for ``/health`` and ``/metrics``, keeps the store probed and
    pruned, says when the node is ready, and drains it on SIGTERM."""

    who = "ops"
    _previous_sigterm: Any = None

    @inlineCallbacks
    def start(self, settings: Settings):
        self._census = Census(settings.peers)
        self._router = worker.router_of(self)
        self._scan_left: Optional[Set[int]] = set()
        yield self.follow_meta(self._on_join, "wamp.session.on_join")
        yield self.follow_meta(self._on_leave, "wamp.session.on_leave")
        yield self.follow_meta(self._on_sub_create, "wamp.subscription.on_create")
        yield self.follow_meta(self._on_subscribe, "wamp.subscription.on_subscribe")
        yield self.follow_meta(self._on_unsubscribe, "wamp.subscription.on_unsubscribe")
        yield self.follow_meta(self._on_sub_delete, "wamp.subscription.on_delete")
        yield self._scan()
        health = runtime().health
        health.observer = self
        rt = runtime()
        self._probe = StoreProbe(rt.messages, reactor)
        self._probe.start()
        self._pruner = Pruner(settings, rt.messages, reactor, interval=settings.retention_interval)
        self._pruner.start()
        self._install_drain()
        self._ready_loop = task.LoopingCall(self._say_ready_once)
        self._ready_loop.start(READY_POLL, now=False)
        self.log.info("deptcast ops: /health and /metrics ready on node {node} (retention: {rules})",
                      node=settings.node_name, rules=retention_text(settings))

    def onLeave(self, details):
        for name in ("_probe", "_pruner"):
            part = getattr(self, name, None)
            if part is not None:
                part.stop()
        loop = getattr(self, "_ready_loop", None)
        if loop is not None and loop.running:
            loop.stop()
        if runtime().health.observer is self:
            runtime().health.observer = None
        super().onLeave(details)

    # ------------------------------------------------------------------ Observer

    def links_in(self) -> Set[str]:
        return self._census.peers_linked

    def links_out(self) -> Set[str]:
        return {link_id[len(LINK_PREFIX):] for link_id, up in worker.link_states(self._router).items()
                if up and link_id.startswith(LINK_PREFIX)}

    def wamp_sessions(self) -> int:
        return self._census.client_sessions

    def users_online(self) -> int:
        return self._census.users

    def subscribers(self) -> Dict[str, int]:
        return self._census.subscribers()

    def router_events_sent(self) -> Optional[int]:
        return worker.events_sent(self._router)

    # ------------------------------------------------------------------ the census

    @inlineCallbacks
    def _scan(self):
        """Take in the sessions and subscriptions that were there before this component."""
        yield scan_sessions(self, None, self._census.knows, self._scan_left, self._on_join)
        self._scan_left = None
        subscriptions = yield self.call("wamp.subscription.list")
        for sub_id in subscriptions.get("exact", []):
            try:
                sub = yield self.call("wamp.subscription.get", sub_id)
                members = yield self.call("wamp.subscription.list_subscribers", sub_id)
            except ApplicationError:
                continue
            if sub:
                self._census.created(sub_id, sub["uri"])
                for sid in members or []:
                    self._census.subscribed(sid, sub_id)

    def _on_join(self, info: Dict[str, Any], *args, **kwargs) -> None:
        if isinstance(info, dict):
            self._census.joined(info.get("session"), info.get("authrole"), info.get("authid"),
                                (info.get("authextra") or {}).get("dept"))

    def _on_leave(self, session_id, *args, **kwargs) -> None:
        if self._scan_left is not None:
            self._scan_left.add(session_id)
        self._census.left(session_id)

    def _on_sub_create(self, session_id, details, *args, **kwargs) -> None:
        if isinstance(details, dict) and details.get("match", "exact") == "exact":
            self._census.created(details.get("id"), details.get("uri", ""))

    def _on_subscribe(self, session_id, subscription_id, *args, **kwargs) -> None:
        self._census.subscribed(session_id, subscription_id)

    def _on_unsubscribe(self, session_id, subscription_id, *args, **kwargs) -> None:
        self._census.unsubscribed(session_id, subscription_id)

    def _on_sub_delete(self, session_id, subscription_id, *args, **kwargs) -> None:
        self._census.deleted(subscription_id)

    # ------------------------------------------------------------------ ready

    def _say_ready_once(self) -> None:
        rt = runtime()
        address = worker.web_address(self._router)
        if address is None or rt.health.draining or not rt.health.verdict(self.settings, rt.messages.value).serving:
            return
        self._ready_loop.stop()
        settings = self.settings
        mode = ("quick-start mode (DEPTCAST_DEV=1: sign-in form on, not for production)" if settings.dev
                else "production mode")
        if settings.peers:
            out = self.links_out()
            links = ", ".join(f"{p} {'up' if p in out and p in self.links_in() else 'down'}" for p in settings.peers)
        else:
            links = "none (a single node)"
        self.log.info("deptcast node {node} is ready: {where}; {mode}; store {store}; links: {links}",
                      node=settings.node_name, where=connect_text(*address), mode=mode,
                      store=describe_store(settings), links=links)

    # ------------------------------------------------------------------ drain

    def _install_drain(self) -> None:
        """Put the drain in front of Crossbar's SIGTERM handler of this worker (installed
        when the worker joined its controller, before any component started)."""
        previous = signal.getsignal(signal.SIGTERM)
        if getattr(previous, "_deptcast_drain", False):
            return  # a restarted component: the drain is in place already
        draining = {"started": False}

        def on_sigterm(signum, frame):
            if draining["started"]:
                return  # the controller and systemd may both send it
            draining["started"] = True
            cast(IReactorThreads, reactor).callFromThread(self._drain_then, previous, signum, frame)
        on_sigterm._deptcast_drain = True  # type: ignore[attr-defined]  # a mark on the function, read above
        signal.signal(signal.SIGTERM, on_sigterm)

    @inlineCallbacks
    def _drain_then(self, previous, signum, frame):
        try:
            yield self.drain()
        except Exception as e:  # never keep the node from stopping
            self.log.warn("deptcast ops: the drain failed ({error}); stopping anyway", error=str(e))
        if callable(previous):
            previous(signum, frame)
        else:  # no handler of Crossbar's: stop the reactor as Twisted would
            reactor.stop()

    @inlineCallbacks
    def drain(self, timeout: float = DRAIN_TIMEOUT):
        """Ask every client to go elsewhere, and wait (at most ``timeout`` seconds) until
        they have."""
        health = runtime().health
        health.draining = True
        if self._ready_loop.running:
            self._ready_loop.stop()
        wamp, legacy = self._census.client_sessions, len(health.legacy)
        started = reactor.seconds()
        yield worker.stop_listening(self._router)
        for role in CLIENT_ROLES:
            try:
                yield self.call("wamp.session.kill_by_authrole", role, reason=SHUTDOWN_REASON,
                                message=SHUTDOWN_MESSAGE)
            except ApplicationError as e:
                self.log.warn("deptcast ops: could not close the {role} sessions: {error}", role=role, error=e.error)
        for sock in list(health.legacy):
            try:
                # sendClose() lets an application send 1000 or 3000-4999 only; 1001 is RFC 6455's
                # own "endpoint going away", meant for exactly this, so the frame is sent directly
                sock.sendCloseFrame(code=GOING_AWAY, reasonUtf8=SHUTDOWN_MESSAGE.encode(), isReply=False)
            except Exception as e:  # a socket closing by itself meanwhile
                self.log.debug("deptcast ops: could not close a legacy socket: {error}", error=str(e))
        while self._census.client_sessions or health.legacy:
            if reactor.seconds() - started > timeout:
                break
            yield task.deferLater(reactor, 0.05, lambda: None)
        self.log.info("deptcast ops: stopping: asked {wamp} WAMP sessions and {legacy} legacy sockets to "
                      "reconnect elsewhere; {left} still connected after {seconds:.2f} s",
                      wamp=wamp, legacy=legacy, left=self._census.client_sessions + len(health.legacy),
                      seconds=reactor.seconds() - started)
