"""Every name of the deptcast contract, defined once: realm, roles, topics, procedures.

Department codes and user ids are 1-64 characters of letters, digits, ``-`` and ``.``, where
``.`` is never the first or last character and never doubled: every name is a sequence of
valid WAMP URI components, so every topic built from names can be published. Neither may
contain ``_``, so a user key ``<dept>_<user>`` splits unambiguously, and a user is the pair
(department, user id).
The error URIs live in :mod:`components.core.errors`.
"""

import re
from typing import Optional, Tuple, TypeGuard

REALM = "deptcast"

# -- roles
MEMBER = "member"
PUBLISHER = "publisher"
#: operators and offboarding systems: everything a publisher may, plus ``deptcast.admin.*``
ADMIN = "admin"
#: the roles a token may carry (client sessions)
CLIENT_ROLES = (MEMBER, PUBLISHER, ADMIN)
#: the role of the node's own components (router components, never a client)
BACKEND_ROLE = "deptcast-backend"
#: the role peers' router links join with
RLINK_ROLE = "deptcast-rlink"

# -- topics clients subscribe to (exact match only)
TOPIC_DEPT = "deptcast.dept."
TOPIC_ALL = "deptcast.all"
TOPIC_USER = "deptcast.user."
TOPIC_PRESENCE = "deptcast.presence."
#: a sender's receipt counts: ``TOPIC_RECEIPTS + "<dept>_<user>"`` (that user only)
TOPIC_RECEIPTS = "deptcast.receipts."

# -- topics only the nodes use (clients may never subscribe to them)
INTERNAL_PREFIX = "deptcast.internal."
#: each node's api answers link probes on ``SYNC_TOPIC + <node>``
SYNC_TOPIC = INTERNAL_PREFIX + "sync."
#: nodes' presence components exchange deltas and snapshots here
PRESENCE_INTERNAL_TOPIC = INTERNAL_PREFIX + "presence"

# -- procedures
PROC_SEND = "deptcast.send"
PROC_HISTORY = "deptcast.history"
PROC_PRESENCE_ONLINE = "deptcast.presence.online"
PROC_SEND_BATCH = "deptcast.send_batch"
PROC_ACK = "deptcast.ack"
PROC_RECEIPTS = "deptcast.receipts"
PROC_RECIPIENTS = "deptcast.recipients"
PROC_ROSTER = "deptcast.roster"
PROC_SESSION_REFRESH = "deptcast.session.refresh"
#: ``admin`` role only (others get the router's ``wamp.error.not_authorized``)
PROC_ADMIN_REVOKE = "deptcast.admin.revoke"
#: procedures clients may call
CLIENT_PROCEDURES = frozenset({PROC_SEND, PROC_SEND_BATCH, PROC_HISTORY, PROC_PRESENCE_ONLINE})
#: operator procedures of the roster (``admin`` role): ``roster_import(rows)`` takes at most
#: 1,000 rows ``[dept, user]`` and answers ``{"added": n, "known": m}``;
#: ``roster_remove(user_key)`` answers ``{"removed": bool}``
PROC_ADMIN_ROSTER_IMPORT = "deptcast.admin.roster_import"
PROC_ADMIN_ROSTER_REMOVE = "deptcast.admin.roster_remove"
#: the dynamic authorizer, registered by the node's own auth component
PROC_AUTHORIZE = INTERNAL_PREFIX + "authorize"

#: the reason of the GOODBYE a stopping (draining) node sends its clients: reconnect elsewhere, now
CLOSE_GOING_AWAY = "wamp.close.system_shutdown"
#: the token's ``exp`` passed and no newer token was handed over (legacy sockets: close code 4001)
CLOSE_TOKEN_EXPIRED = "deptcast.close.token_expired"
#: an admin revoked the user: clients do not come back by themselves (legacy sockets: close code 4003)
CLOSE_REVOKED = "deptcast.close.revoked"

# -- receipts: ``deptcast.ack`` takes the first two states, ``deptcast.recipients`` all three
DELIVERED = "delivered"
SEEN = "seen"
PENDING = "pending"
RECIPIENT_STATES = (SEEN, DELIVERED, PENDING)

#: the most items ``deptcast.send_batch`` takes in one call
SEND_BATCH_MAX = 1000

#: the ``to`` value that addresses every user
ALL = "All"

#: a name as a regex fragment (also used to build legacy key patterns); the length is checked apart
NAME_PATTERN = r"[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*"
#: the characters a name may hold at all
NAME_CHARS = r"[A-Za-z0-9.\-]"
NAME_MAX = 64
#: text of the naming rule, for error messages
NAME_RULE = "1-64 letters, digits, '-' or '.' ('.' neither first, last nor doubled)"
_NAME_RE = re.compile(NAME_PATTERN)


def is_name(value: object) -> TypeGuard[str]:
    """Whether ``value`` is a valid department code or user id.

    :rtype: bool
    """
    return (isinstance(value, str) and len(value) <= NAME_MAX
            and _NAME_RE.fullmatch(value) is not None)


def user_key(dept: str, user: str) -> str:
    """The key ``<dept>_<user>`` that addresses one user.

    :rtype: str
    """
    return f"{dept}_{user}"


def parse_user_key(key: str) -> Optional[Tuple[str, str]]:
    """Split ``<dept>_<user>`` into ``(dept, user)``, or ``None`` if it is not a user key.

    :rtype: tuple or None
    """
    if not isinstance(key, str) or key.count("_") != 1:
        return None
    dept, user = key.split("_")
    if is_name(dept) and is_name(user):
        return dept, user
    return None


def dept_topic(dept: str) -> str:
    return TOPIC_DEPT + dept


def user_topic(dept: str, user: str) -> str:
    """The direct-message topic of user ``user`` of department ``dept``."""
    return TOPIC_USER + user_key(dept, user)


def presence_topic(dept: str) -> str:
    return TOPIC_PRESENCE + dept


def sync_topic(node: str) -> str:
    """The topic node ``node``'s api answers link probes on."""
    return SYNC_TOPIC + node


def client_topics(dept: str, user: str) -> Tuple[str, str, str]:
    """The message topics a member receives: its department, ``All``, its own direct messages.

    :rtype: tuple
    """
    return (dept_topic(dept), TOPIC_ALL, user_topic(dept, user))
