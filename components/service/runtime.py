"""What the router worker's parts share: the settings, read once, and the services that the
router components start and the web transport's resources use.

Crossbar creates the router components (:mod:`components.wamp`), the ticket authenticator
and the resources of the web transport (:mod:`components.edge`) separately, all in the
router worker's process; they meet here. The components start before the transports, so
a resource normally finds its service ready; while one (re)starts, requests wait a bounded
time and are then refused with ``deptcast.error.unavailable``.
"""

from typing import Any, Optional

from twisted.internet import reactor

from components.core.settings import ConfigError, Settings, load_settings
from components.service.links import LinkState
from components.service.nodehealth import NodeHealth
from components.service.messaging import MessageService
from components.service.presence import LegacyUsers
from components.service.receipts import ReceiptBuffer
from components.service.roster import SignIns
from components.service.sessionlife import SessionLives
from components.service.slot import Slot


class Runtime:
    """The router worker's shared state.

    :ivar messages: the node's :class:`~components.service.messaging.MessageService`, set
        by the api component once its store is open
    :ivar bridge: the router session the web transport's resources subscribe with
    :ivar links: whether this node's links to its peers are up (:mod:`components.upstream.rlinks` reports)
    :ivar legacy_users: the open legacy sockets, which presence counts like WAMP sessions
    :ivar sessions: the signed-in sessions and their tokens' lives, and the revocations known
    :ivar health: what the parts report about themselves, for ``/health`` and ``/metrics``
    :ivar signins: members' sign-ins waiting to be written to the roster (WAMP and legacy)
    :ivar receipts: receipts waiting to be written (acknowledgements, legacy writes)
    """

    def __init__(self, clock: Any = reactor) -> None:
        self.clock = clock
        self.messages: Slot[MessageService] = Slot(clock, "the node's message service")
        self.bridge: Slot[Any] = Slot(clock, "the node's router session")
        self.links = LinkState()
        self.legacy_users = LegacyUsers()
        self.sessions = SessionLives(clock)
        self.health = NodeHealth(clock)
        self.signins = SignIns()
        self.receipts = ReceiptBuffer()
        self._settings: Optional[Settings] = None
        self._error: Optional[ConfigError] = None

    def settings(self) -> Settings:
        """The node's settings, read from the environment the first time.

        :raises ConfigError: naming the bad setting (every time, once it failed)
        :rtype: Settings
        """
        if self._settings is None:
            if self._error is not None:
                raise self._error
            try:
                self._settings = load_settings()
            except ConfigError as e:
                self._error = e
                raise
        return self._settings

    def settings_or_log(self, log: Any, who: str) -> Optional[Settings]:
        """The settings, or ``None`` after logging why ``who`` cannot start.

        :rtype: Settings or None
        """
        try:
            return self.settings()
        except ConfigError as e:
            log.error("deptcast {who}: cannot start: {error}", who=who, error=str(e))
            return None


_runtime: Optional[Runtime] = None


def runtime() -> Runtime:
    """This process's :class:`Runtime` (made on first use).

    :rtype: Runtime
    """
    global _runtime
    if _runtime is None:
        _runtime = Runtime()
    return _runtime
