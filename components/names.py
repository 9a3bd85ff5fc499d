"""Names of the deptcast contract: codes, user keys, topics and procedures.

Department codes and user ids are 1-64 characters of letters, digits, ``.`` and ``-``.
Neither may contain ``_``, so a user key ``<dept>_<user>`` splits unambiguously.
"""

import re
from typing import Optional, Tuple

REALM = "deptcast"

TOPIC_DEPT = "deptcast.dept."
TOPIC_ALL = "deptcast.all"
TOPIC_USER = "deptcast.user."
TOPIC_PRESENCE = "deptcast.presence."

PROC_SEND = "deptcast.send"
PROC_HISTORY = "deptcast.history"
PROC_PRESENCE_ONLINE = "deptcast.presence.online"

#: procedures only the node's own components may call or register
PROC_AUTHENTICATE = "deptcast.internal.authenticate"
PROC_AUTHORIZE = "deptcast.internal.authorize"
PROC_SEND_AS = "deptcast.internal.send_as"

#: the ``to`` value that addresses every user
ALL = "All"

_NAME_RE = re.compile(r"[A-Za-z0-9.\-]{1,64}")


def is_name(value: object) -> bool:
    """Whether ``value`` is a valid department code or user id.

    :rtype: bool
    """
    return isinstance(value, str) and _NAME_RE.fullmatch(value) is not None


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


def user_topic(user: str) -> str:
    return TOPIC_USER + user


def presence_topic(dept: str) -> str:
    return TOPIC_PRESENCE + dept
