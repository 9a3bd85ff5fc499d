"""Which of this node's own router links are up: the state the router worker's parts follow
when a link to a peer drops and comes back while both nodes run.

Each node pulls a peer's events over a link it owns (Crossbar's rlink). While that link is
down, events published on the peer never reach this node, and nothing in the WAMP meta API
of either node says so. :mod:`components.upstream.rlinks` watches the links inside the router
worker and reports here; the legacy fan-out (reads what it may have missed from the store)
and the presence component (asks the peer for a fresh snapshot) listen.
"""

from typing import Callable, Dict, List, Optional

import txaio

txaio.use_twisted()  # a Twisted module: its txaio loggers are Twisted's

Listener = Callable[[str], None]


class LinkState:
    """Up or down, per peer, for this node's links to its peers.

    A peer is *up* once this node's link to it has joined the peer and subscribed there every
    topic this node needs (not merely connected), *down* from the moment the link's
    connection is lost, and unknown (``None``) before anything was reported.
    """

    log = txaio.make_logger()

    def __init__(self) -> None:
        self._up: Dict[str, bool] = {}
        self._on_up: List[Listener] = []
        self._on_down: List[Listener] = []
        #: whether something in this process reports link state (the rlink watch is installed)
        self.watching = False

    def is_up(self, peer: str) -> Optional[bool]:
        """``True``/``False`` as last reported for ``peer``; ``None`` if never reported.

        :rtype: bool or None
        """
        return self._up.get(peer)

    def on_up(self, listener: Listener) -> None:
        """Call ``listener(peer)`` whenever this node's link to ``peer`` is (back) up."""
        self._on_up.append(listener)

    def on_down(self, listener: Listener) -> None:
        """Call ``listener(peer)`` whenever this node's link to ``peer`` goes down."""
        self._on_down.append(listener)

    def remove(self, listener: Listener) -> None:
        """Stop calling ``listener`` (for either change)."""
        for listeners in (self._on_up, self._on_down):
            while listener in listeners:
                listeners.remove(listener)

    def up(self, peer: str) -> None:
        """This node's link to ``peer`` joined the peer and carries every topic this node needs."""
        self._up[peer] = True
        self._notify(self._on_up, peer)

    def down(self, peer: str) -> None:
        """This node's link to ``peer`` lost its connection (told once per loss)."""
        if self._up.get(peer) is False:
            return
        self._up[peer] = False
        self._notify(self._on_down, peer)

    def _notify(self, listeners: List[Listener], peer: str) -> None:
        for listener in list(listeners):
            try:
                listener(peer)
            except Exception:  # one listener's bug must not keep the others from hearing
                self.log.failure("deptcast links: a link listener failed")
