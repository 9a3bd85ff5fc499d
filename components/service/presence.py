"""The legacy sockets of the router worker, as presence counts them.

A legacy socket (``/webSocket/<key>``) is not a WAMP session, so the router's meta API, where
the presence component learns who is connected, never sees it. The legacy endpoint
(:mod:`components.edge.legacy`) reports each open socket here with its key's department
and user; the presence component (:mod:`components.wamp.presence`) reads what is here when
it starts and listens from then on, so either may start first.
"""

from typing import Dict, Hashable, List, Optional, Protocol, Tuple

import txaio

txaio.use_twisted()  # a Twisted module: its txaio loggers are Twisted's


class LegacyListener(Protocol):
    """What hears of legacy sockets opening and closing (the presence component)."""

    def legacy_opened(self, socket: Hashable, dept: str, user: str) -> None: ...

    def legacy_closed(self, socket: Hashable) -> None: ...


class LegacyUsers:
    """The open legacy sockets of this worker and their users."""

    log = txaio.make_logger()

    def __init__(self) -> None:
        self._sockets: Dict[Hashable, Tuple[str, str]] = {}
        self._listener: Optional[LegacyListener] = None

    def __len__(self) -> int:
        return len(self._sockets)

    def open_sockets(self) -> List[Tuple[Hashable, str, str]]:
        """``(socket, dept, user)`` of every open legacy socket.

        :rtype: list
        """
        return [(sock, dept, user) for sock, (dept, user) in self._sockets.items()]

    def listen(self, listener: Optional[LegacyListener]) -> None:
        """Tell ``listener`` of every socket that opens or closes from now on (``None``: nobody)."""
        self._listener = listener

    def opened(self, socket: Hashable, dept: str, user: str) -> None:
        """A legacy socket of ``user`` in ``dept`` opened; a second report is a no-op."""
        if socket in self._sockets:
            return
        self._sockets[socket] = (dept, user)
        if self._listener is not None:
            try:
                self._listener.legacy_opened(socket, dept, user)
            except Exception:
                self.log.failure("deptcast presence: counting a legacy socket failed")

    def closed(self, socket: Hashable) -> None:
        """A legacy socket closed; unknown sockets (never reported open) are ignored."""
        if self._sockets.pop(socket, None) is None:
            return
        if self._listener is not None:
            try:
                self._listener.legacy_closed(socket)
            except Exception:
                self.log.failure("deptcast presence: uncounting a legacy socket failed")
