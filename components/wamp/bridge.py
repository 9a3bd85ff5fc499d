"""The router session the web transport's resources share (legacy sockets subscribe through it).

A router component of the node: it joins the realm in-process when the node starts, before
the web transport opens, and puts itself into the runtime's ``bridge`` slot, where
:class:`components.edge.legacy.Fanout` finds it.
"""

from components.core.settings import Settings
from components.service.runtime import runtime
from components.wamp.base import NodeComponent


class BridgeComponent(NodeComponent):
    """Offers its session to the web transport's resources while it is joined."""

    who = "bridge"

    def start(self, settings: Settings) -> None:
        runtime().bridge.set(self)
        self.log.info("deptcast bridge: the web transport's session is ready on node {node}",
                      node=settings.node_name)

    def onLeave(self, details):
        runtime().bridge.clear(self)
        super().onLeave(details)
