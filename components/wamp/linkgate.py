"""Hold sends on a starting cluster node until its peers can hear it.

The hole this closes: when a node X (re)starts, every peer Y pulls X's events over a link
that Y owns. Y's link reconnects to X with exponential back-off and, once joined,
re-subscribes on X to every topic Y's subscribers need. Until it has, an event published
on X is not forwarded to Y, and Y's subscribers silently miss it (3.5-5 s of messages
measured on crossbar 26.10.1). Crossbar's rlink back-off is not configurable.

So X's message service holds (delays, does not refuse) every ``deptcast.send`` until, for every peer
Y, Y's link session on X is subscribed to every topic subscribed on Y. X learns Y's
topics from Y itself, with a handshake over the links:

1. X publishes a *probe* on ``deptcast.internal.sync.<Y>`` with the exact topics
   subscribed on X by its own sessions (from the WAMP meta API; a subscription only peers'
   link sessions hold is not pulled by any link). Y's root component subscribes to that topic, so the
   probe reaches Y only once Y's link to X is joined and forwarding.
2. Y answers on ``deptcast.internal.sync.<X>`` with the exact topics its own sessions subscribed, and
   whether X's link session on Y is subscribed to all of X's topics (X's own link to Y
   pulls what X's subscribers need). The answer reaches X only over that link.
3. X checks with its meta API that Y's link session on X is subscribed to each of Y's
   topics, and that Y found X's link complete.

``deptcast.history`` is held too: a client that reconnects to X subscribes, then catches
up from history; once history answers, the links carry its subscriptions both ways.

X probes again every :data:`PROBE_INTERVAL` seconds until every peer passes, or until the
timeout (a peer that is down must not stop the node from working): then it opens the gate
anyway and logs a warning naming the peers that did not answer.

Sends are not held while a running node's link is down (the link repair of
:mod:`components.upstream.rlinks` reports it to the runtime's
:class:`~components.service.links.LinkState`): the legacy fan-out and careful WAMP clients
fill the gap from the store.
"""

from typing import Any, Dict, List, Optional, Sequence, Set

from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions
from twisted.internet import defer, task

from components.core.names import RLINK_ROLE, sync_topic

#: seconds between two probes while the gate is closed
PROBE_INTERVAL = 0.1


def missing_topics(peer_topics: Sequence[str], link_topics: Set[str]) -> List[str]:
    """The topics a peer needs that its link has not subscribed to here yet.

    :param peer_topics: the exact topics subscribed on the peer
    :param link_topics: the topics the peer's link sessions are subscribed to on this node
    :rtype: list
    """
    return [t for t in peer_topics if not t.startswith("wamp.") and t not in link_topics]


def own_subscribers(subscribers: Sequence[int], links: Set[int]) -> List[int]:
    """The subscribers of a subscription that are not peers' link sessions.

    :param subscribers: the subscription's subscriber session ids
    :param links: the session ids of the peers' link sessions on this node
    :rtype: list
    """
    return [s for s in subscribers or [] if s not in links]


class LinkGate:
    """The hold on sends of one node.

    :param session: the root component's session (backend role: may use the meta API)
    :param node: this node's name
    :param peers: the names of the other nodes (each one's link authid)
    :param timeout: seconds after which the gate opens even if some peer did not pass
    """

    def __init__(self, session: Any, node: str, peers: Sequence[str], timeout: float, reactor: Any) -> None:
        self._session = session
        self._node = node
        self._peers = list(peers)
        self._timeout = timeout
        self._reactor = reactor
        self._answers: Dict[str, Dict[str, Any]] = {}
        self._answering: Set[str] = set()
        self._waiters: List[defer.Deferred] = []
        self._open = not self._peers
        self.opened_after: Optional[float] = 0.0 if self._open else None

    @property
    def is_open(self) -> bool:
        return self._open

    def wait(self) -> defer.Deferred:
        """A Deferred that fires once the gate is open (at once if it is)."""
        if self._open:
            return defer.succeed(None)
        d: defer.Deferred = defer.Deferred()
        self._waiters.append(d)
        return d

    @defer.inlineCallbacks
    def start(self):
        """Answer peers' probes from now on; start probing the peers (in the background)."""
        if not self._peers:
            return
        yield self._session.subscribe(self._on_sync, sync_topic(self._node))
        self._run().addErrback(self._failed)

    def _failed(self, failure) -> None:
        self._session.log.error("deptcast api: the link check failed ({error}); accepting sends",
                                error=failure.getErrorMessage())
        self._open_gate()

    def _open_gate(self) -> None:
        self._open = True
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(None)

    @defer.inlineCallbacks
    def _run(self):
        started = self._reactor.seconds()
        deadline = started + self._timeout
        pending = list(self._peers)
        while pending and self._session.is_attached():
            local = yield self._local_topics()
            for peer in pending:
                yield self._session.publish(sync_topic(peer),
                                            {"kind": "probe", "from": self._node, "topics": local},
                                            options=PublishOptions(acknowledge=True))
            link_topics = yield self._link_topics()
            passed = []
            for peer in pending:
                answer = self._answers.get(peer)
                if (answer is not None and answer.get("complete")
                        and not missing_topics(answer["topics"], link_topics.get(peer, set()))):
                    passed.append(peer)
            pending = [p for p in pending if p not in passed]
            if not pending:
                break
            if self._reactor.seconds() > deadline:
                self._session.log.warn(
                    "deptcast api: no working link from {peers} after {timeout:g} s; accepting sends anyway: "
                    "subscribers on those nodes may miss messages until their links are up",
                    peers=", ".join(pending), timeout=self._timeout)
                break
            yield task.deferLater(self._reactor, PROBE_INTERVAL, lambda: None)
        self.opened_after = self._reactor.seconds() - started
        if not pending:
            self._session.log.info(
                "deptcast api: links from all peers ({peers}) are up after {seconds:.2f} s; accepting sends",
                peers=", ".join(self._peers), seconds=self.opened_after)
        self._open_gate()

    @defer.inlineCallbacks
    def _link_topics(self, only: Optional[str] = None):
        """Peer name to the exact topics its link sessions are subscribed to on this node.

        :param only: just this peer's link sessions
        """
        call = self._session.call
        result: Dict[str, Set[str]] = {}
        session_ids = yield call("wamp.session.list", [RLINK_ROLE])
        for sid in session_ids:
            try:
                info = yield call("wamp.session.get", sid)
                if only is not None and info["authid"] != only:
                    continue
                subs = yield call("wamp.subscription.list", sid)
            except ApplicationError:
                continue  # left in the meantime
            topics = result.setdefault(info["authid"], set())
            for sub_id in subs.get("exact", []):
                try:
                    sub = yield call("wamp.subscription.get", sub_id)
                except ApplicationError:
                    continue
                if sub:
                    topics.add(sub["uri"])
        return result

    @defer.inlineCallbacks
    def _on_sync(self, msg: Dict[str, Any], *args, **kwargs):
        if not isinstance(msg, dict) or msg.get("from") not in self._peers:
            return
        peer = msg["from"]
        if msg.get("kind") == "topics":
            self._answers[peer] = {"topics": list(msg.get("topics") or []), "complete": bool(msg.get("complete"))}
        elif msg.get("kind") == "probe" and peer not in self._answering:
            # one answer per peer at a time: the peer probes again until it is satisfied
            self._answering.add(peer)
            try:
                topics = yield self._local_topics()
                link_topics = yield self._link_topics(only=peer)
                complete = not missing_topics(list(msg.get("topics") or []), link_topics.get(peer, set()))
                yield self._session.publish(sync_topic(peer), {"kind": "topics", "from": self._node,
                                                               "topics": topics, "complete": complete})
            except Exception as e:
                self._session.log.warn("deptcast api: could not answer the link probe of {peer}: {error}",
                                       peer=peer, error=str(e))
            finally:
                self._answering.discard(peer)

    @defer.inlineCallbacks
    def _local_topics(self):
        """The exact topics subscribed on this node by a session of its own (what a peer's link
        must pull for us): a subscription only peers' link sessions hold is not pulled by any
        link (:mod:`components.upstream.mesh`), so it is left out."""
        call = self._session.call
        subs = yield call("wamp.subscription.list")
        links = set((yield call("wamp.session.list", [RLINK_ROLE])))
        topics = []
        for sub_id in subs.get("exact", []):
            try:
                sub = yield call("wamp.subscription.get", sub_id)
                if not sub or sub["uri"].startswith("wamp."):
                    continue
                subscribers = yield call("wamp.subscription.list_subscribers", sub_id)
            except ApplicationError:
                continue  # gone in the meantime
            if own_subscribers(subscribers, links):
                topics.append(sub["uri"])
        return topics
