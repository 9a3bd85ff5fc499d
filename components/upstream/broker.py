"""The node's own publications through the broker in one plain pass (one patch:
``broker.in_process``).

Every notice a node takes in is published by its own in-process session (the composition
root's, unacknowledged), and every notice forwarded by a peer is published again on the
receiving node by the router link's in-process local leg (``trusted``, unacknowledged with
``mesh.republish``). Crossbar's ``Broker.processPublish`` handles each one as it would a
client's: it checks the topic's URI, asks the router to authorize the publish (a Deferred, its
callback chain and a closure per publish, with debug lines whose arguments are made whatever
the level), builds the event, makes a Deferred, a closure and a list per subscription for its
chunked dispatch, and gathers them. In the send ceiling's profiles this per-notice pass, apart
from the writes to the subscribers, was the largest single piece of a node's own work during
batches.

For a publication the outcome of which that pass decides without asking anyone, the patch
runs the same steps in one function:

* the publisher is attached in-process (its transport is Crossbar's
  ``RouterApplicationSession``) and the router is not traced;
* the publication asks for nothing but ``exclude_authrole`` and ``exclude_me`` among the
  receiver filters (no acknowledgement, no retention, no transparent payload, no
  ``eligible``/``exclude``/``exclude_authid``), and the realm keeps no event history;
* its authorization is known without a call: the publisher's role is Crossbar's trusted role
  (which allows everything and discloses the publisher), or the router's authorization cache
  holds an answer for this role, topic and action (static permissions with ``cache``, as the
  node's backend role has) that allows it and asks no payload validation.

Then the topic is matched, the event built per matching subscription exactly as Crossbar builds
it (publication id, disclosure, ``forward_for`` extended by the publisher, the topic for
non-exact subscriptions, correlation fields, ``_router_internal``), and written to each receiver
through ``Router.send`` in the same order, with Crossbar's chunking (the first
``event_dispatching_chunk_size`` receivers at once, the next chunk on a later reactor turn).
Anything else (a client's publish, a first publish on a topic whose authorization is not cached
yet, a traced router) goes to Crossbar's own ``processPublish``, which fills the cache.
"""

from typing import Any, Callable, List, Optional

import txaio
from autobahn import util
from autobahn.exception import PayloadExceededError
from autobahn.wamp import message
from autobahn.wamp.message import _URI_PAT_LOOSE_NON_EMPTY, _URI_PAT_STRICT_NON_EMPTY
from crossbar.router.broker import Broker
from crossbar.router.role import RouterTrustedRole
from crossbar.router.session import RouterApplicationSession

from components.upstream.registry import Patch, Wiring, register, replace

txaio.use_twisted()  # a Twisted module: its txaio loggers are Twisted's

_TRUSTED = "trusted"
_EXACT = message.Subscribe.MATCH_EXACT


def _authorization(router: Any, session: Any, topic: str) -> Optional[dict]:
    """What ``Router.authorize`` would answer for ``session`` publishing to ``topic``, where it
    answers without calling anyone; ``None`` otherwise."""
    authrole = session._authrole
    role = router._roles.get(authrole)
    if role is None:
        return None
    if authrole == _TRUSTED and type(role) is RouterTrustedRole:
        # RouterTrustedRole.authorize answers True: allowed, not cached, disclosed (trusted)
        return {"allow": True, "cache": False, "disclose": True}
    cached = router._authorization_cache.get((session._realm, authrole, topic, "publish"))
    if type(cached) is not dict or not cached.get("allow"):
        return None
    if cached.get("validate") and router._inventory:
        return None
    return cached


def _plain(broker: Any, session: Any, publish: Any) -> bool:
    """Whether ``processPublish(session, publish)`` can take the plain pass."""
    router = broker._router
    return (type(getattr(session, "_transport", None)) is RouterApplicationSession
            and not router._is_traced and not publish.acknowledge and not publish.retain
            and publish.payload is None and not publish.eligible and not publish.eligible_authid
            and not publish.eligible_authrole and not publish.exclude and not publish.exclude_authid
            and not broker._event_store)


def _notify(broker: Any, msg: Any, receivers: List[Any], chunk: int, subscription: Any, publication: int) -> None:
    """Send ``msg`` to ``receivers`` as Crossbar's broker does (its ``_notify_some``, untraced):
    those of the first ``chunk`` still attached when it starts, the rest on a later reactor
    turn."""
    send = broker._router.send
    for receiver in [r for r in receivers[:chunk] if r._session_id and r._transport]:
        try:
            send(receiver, msg)
        except PayloadExceededError as e:
            broker.log.warn("could not dispatch event to receiver {receiver} (subscription_id={subscription_id}, "
                            "publication_id={publication_id}): {err}", receiver=receiver._session_id,
                            subscription_id=subscription.id, publication_id=publication, err=str(e))
    rest = receivers[chunk:]
    if rest:
        txaio.call_later(0, _notify, broker, msg, rest, chunk, subscription, publication)


def publish_plain(broker: Any, session: Any, publish: Any) -> bool:
    """Process ``publish`` from ``session`` in one pass if :func:`_plain` allows it and its
    authorization is known; answer whether it did (``False``: nothing was done)."""
    topic = publish.topic
    pattern = _URI_PAT_STRICT_NON_EMPTY if broker._option_uri_strict else _URI_PAT_LOOSE_NON_EMPTY
    if not pattern.match(topic):
        return False
    if session._authrole != _TRUSTED and topic.startswith("wamp."):
        return False  # Crossbar refuses it (restricted to the trusted role)
    router = broker._router
    subscriptions = broker._subscription_map.match_observations(topic)
    if not subscriptions:
        return True  # upstream: nothing to do (not acknowledged, retained nor stored)
    authorization = _authorization(router, session, topic)
    if authorization is None:
        return False
    publication = util.id()
    if authorization["disclose"] or topic.startswith("wamp.") or topic.startswith("crossbar."):
        forward_for = None
        if publish.forward_for:
            first = publish.forward_for[0]
            publisher, publisher_authid, publisher_authrole = first["session"], first["authid"], first["authrole"]
            forward_for = publish.forward_for + [
                {"session": session._session_id, "authid": session._authid, "authrole": session._authrole}]
        else:
            publisher, publisher_authid, publisher_authrole = session._session_id, session._authid, session._authrole
    else:
        publisher = publisher_authid = publisher_authrole = forward_for = None
    me_also = publish.exclude_me is not None and not publish.exclude_me
    excluded_roles = publish.exclude_authrole
    by_role = router._authrole_to_sessions
    chunk = broker._options.event_dispatching_chunk_size
    internal = (session._session_id, session._authid, session._authrole)
    for subscription in subscriptions:
        receivers = subscription.observers
        if excluded_roles:
            for role in excluded_roles:
                receivers = receivers - by_role.get(role, set())
        if not receivers or (len(receivers) == 1 and broker in receivers):
            continue
        msg = message.Event(subscription.id, publication, args=publish.args, kwargs=publish.kwargs,
                            publisher=publisher, publisher_authid=publisher_authid,
                            publisher_authrole=publisher_authrole,
                            topic=None if subscription.match == _EXACT else topic,
                            transaction_hash=publish.transaction_hash, forward_for=forward_for)
        msg.correlation_id = publish.correlation_id
        msg.correlation_uri = topic
        msg.correlation_is_anchor = False
        msg.correlation_is_last = False
        msg._router_internal = internal
        _notify(broker, msg, [r for r in receivers if me_also or r is not session], chunk, subscription,
                publication)
    return True


def _process_publish(upstream: Callable[..., Any]) -> Callable[..., Any]:
    def processPublish(self, session, publish):
        if _plain(self, session, publish) and publish_plain(self, session, publish):
            return None
        return upstream(self, session, publish)
    return processPublish


def _apply(wiring: Wiring) -> None:
    replace("crossbar.router.broker.Broker.processPublish", Broker, "processPublish",
            _process_publish(Broker.processPublish))


IN_PROCESS = register(Patch(
    name="broker.in_process",
    replaces=("crossbar.router.broker.Broker.processPublish",),
    checked={
        # the pass mirrored: URI check, match, authorization, disclosure and forward_for, the
        # EVENT, the receivers filtered, chunked dispatch through Router.send
        "crossbar.router.broker.Broker.processPublish":
            "1dd9ade51c829929b1351654e681c8f45e89ed31deb642c9679e378ecdaa0b81",
        "crossbar.router.broker.Broker._filter_publish_receivers":
            "6d30b823df5002b70800b76648de69b6023f2331d3b93f4a6a8b301c52b61481",
        # where the URI pattern and the chunk size come from
        "crossbar.router.broker.Broker.__init__":
            "796236fcd551bd57bdca4679095a38e302bf7f2ad159a46bee274b5bc7d742d7",
        # the authorization answered without a call: the cache's key, trusted disclosure
        "crossbar.router.router.Router.authorize":
            "ae01aca6104577857597c07c9b321246083762748ac10b012714e0839a7c6d7c",
        "crossbar.router.role.RouterTrustedRole.authorize":
            "6662a275ec0d96ea391e4e6725d00f35c60c3582f21eb49901a5d7c7ac368c05",
        "crossbar.router.router.Router.validate":
            "d9a633c696891b6ce706afa3fd5a581b243b820c04d5cb5d6255f6570c887281",
        # an in-process session's publish reaches the broker through it
        "crossbar.router.session.RouterApplicationSession.send":
            "214852b3faa1b56d28c7debb3c30cb41811579693870f9a28bb9918dd59ede19",
        "autobahn.wamp.message.Event.__init__":
            "b6cfad73c996cab3a74c0858a714bc8490bcfaceb3c946781f64dcda5a7b3cd8",
    },
    why="Crossbar's broker handles each of the node's own publications (every notice taken in, and every notice a "
        "peer forwards) as a client's: a Deferred authorization with its callbacks, closures, futures and debug "
        "arguments per publish, the largest piece of a node's own work per notice during batches after the writes; "
        "in-process publications whose authorization is static or trusted now take one plain pass",
    remove_when="Crossbar's broker dispatches a publication whose authorization it has cached without Deferreds "
                "and closures per publish, or the send ceiling's profile no longer shows the broker's pass",
    apply=_apply,
))

#: the patches of this area
PATCHES = (IN_PROCESS,)

__all__ = ["IN_PROCESS", "PATCHES", "publish_plain"]
