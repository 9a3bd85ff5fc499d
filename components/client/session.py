"""The client's WAMP session: Autobahn's own, except that a message arriving after the session
ended is accepted quietly.

A node that ends a session (draining for a restart, a revoked user, an expired token) may have
sent an EVENT or a RESULT just before its GOODBYE reached the client, or deliver one right after
it. Autobahn's session takes such a message for a protocol error: it logs a traceback at
critical level and fails the connection, which was closing anyway. Nothing is lost by dropping
it: the client resumes every topic by position on its next session. A message that is not
welcome *before* the session began is still Autobahn's protocol error.

The front ends make their framework's session class with :class:`AcceptsLateMessages` first
(:mod:`components.client.tx`, :mod:`components.client.aio`) and hand it to their
``Component`` as its ``session_factory``.
"""

from typing import Any

import txaio


class AcceptsLateMessages:
    """Mixed into an Autobahn ``Session`` (a subclass of its public ``ApplicationSession``):
    once the session has been established and has ended, what still arrives on its transport is
    counted in :attr:`late_messages` and dropped."""

    #: messages that arrived after the session ended, dropped
    late_messages = 0

    def onMessage(self, msg: Any) -> None:
        if self.session_details is not None and not self.is_attached():  # type: ignore[attr-defined]  # a mixin: the Session's
            self.late_messages += 1
            if self.late_messages == 1:
                txaio.make_logger().debug("deptcast client: a {kind} message arrived after the session ended; "
                                          "dropped (the next session resumes by position)",
                                          kind=type(msg).__name__)
            return None
        return super().onMessage(msg)  # type: ignore[misc]  # a mixin: the Session's, after it in the MRO
