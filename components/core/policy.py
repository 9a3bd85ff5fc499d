"""Who may do what: the contract's authorization table as plain functions.

The dynamic authorizer (``components.wamp.auth``) is a thin adapter over :func:`authorize`.
"""

from components.core import names
from components.core.targets import Target
from components.core.tokens import Identity

#: the receipts and roster procedures every client role may call (each checks its caller)
RECEIPT_PROCEDURES = frozenset({names.PROC_ACK, names.PROC_RECEIPTS, names.PROC_RECIPIENTS, names.PROC_ROSTER})
#: the roster's operator procedures (the ``admin`` role only)
ROSTER_ADMIN_PROCEDURES = frozenset({names.PROC_ADMIN_ROSTER_IMPORT, names.PROC_ADMIN_ROSTER_REMOVE})


def may_subscribe(identity: Identity, topic: str) -> bool:
    """Whether ``identity`` may subscribe to ``topic`` (an exact topic, never a pattern).

    :rtype: bool
    """
    if topic == names.TOPIC_ALL:
        return True
    for prefix in (names.TOPIC_DEPT, names.TOPIC_PRESENCE):
        if topic.startswith(prefix):
            dept = topic[len(prefix):]
            return names.is_name(dept) and (identity.is_publisher or dept == identity.dept)
    if topic.startswith(names.TOPIC_RECEIPTS):
        # a sender's receipt counts: that user only
        return topic == names.TOPIC_RECEIPTS + identity.key
    if topic.startswith(names.TOPIC_USER):
        # a user is the pair (department, user id): cardio_bob is not onco_bob
        return topic == names.user_topic(identity.dept, identity.user)
    return False


def may_call(identity: Identity, procedure: str) -> bool:
    """Whether ``identity`` may call ``procedure``.

    :rtype: bool
    """
    if procedure in ROSTER_ADMIN_PROCEDURES or procedure == names.PROC_ADMIN_REVOKE:
        return identity.role == names.ADMIN
    return (procedure in names.CLIENT_PROCEDURES or procedure in RECEIPT_PROCEDURES
            or procedure == names.PROC_SESSION_REFRESH)


def may_send(identity: Identity, target: Target) -> bool:
    """Whether ``identity`` may send to ``target``.

    A member: its own department and the users of its own department.
    A publisher: any department, any user, and ``All``.

    :rtype: bool
    """
    if identity.is_publisher:
        return True
    return target.dept is not None and target.dept == identity.dept


def authorize(identity: Identity, uri: str, action: str, options: dict) -> bool:
    """The decision of the dynamic authorizer for a client session.

    Clients subscribe (exact match only) and call; they never publish or register.

    :rtype: bool
    """
    if action == "subscribe":
        if options.get("match", "exact") != "exact":
            return False
        return may_subscribe(identity, uri)
    if action == "call":
        return may_call(identity, uri)
    return False


def same_for_role(uri: str, action: str, options: dict) -> bool:
    """Whether :func:`authorize` gives every client session of a role the same answer for
    ``uri`` and ``action``, so that Crossbar may cache it per (realm, role, URI, action).

    Crossbar's cache key holds neither the session nor the options: a cached answer is
    given to every session of the role, for any options. So only answers that depend on
    neither are cacheable: calls (the procedures check their caller themselves), publish and
    register (refused to every client), and the exact subscription to ``deptcast.all``. A
    non-exact subscription is refused without caching (an exact one must still be allowed);
    a prefix subscription to ``deptcast.all`` that finds the cached allow gets what the exact
    one gets, as no other topic starts with it. Department, presence and user topics depend on
    the session's department or user: never cached.

    :rtype: bool
    """
    if action == "subscribe":
        return uri == names.TOPIC_ALL and options.get("match", "exact") == "exact"
    return action in ("call", "publish", "register")
