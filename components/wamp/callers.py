"""Who is calling: the deptcast identity of a calling client session, for the components'
procedures (registered with caller disclosure).

The router discloses the caller's session id, authid and authrole, but not its authextra,
where the department is; :class:`Callers` reads it once per session from the router the
component is attached to (:func:`components.upstream.worker.session_info`: a dict lookup, where a
``wamp.session.get`` call is a round trip through the dealer, a storm of new clients making one
each), or asks the meta API when that is not possible, and keeps the answer until the session
leaves.
"""

from typing import Any, Dict, Generator, Optional, cast

from autobahn.wamp.exception import ApplicationError
from twisted.internet.defer import inlineCallbacks

from components.core.errors import NOT_AUTHORIZED
from components.core.names import CLIENT_ROLES
from components.core.tokens import Identity
from components.upstream import worker


class Callers:
    """Identities of calling sessions, cached per session id.

    :param session: the component's session (backend role: may call ``wamp.session.get``);
        subscribe :meth:`forget` to ``wamp.session.on_leave``
    """

    def __init__(self, session: Any) -> None:
        self._session = session
        self._identities: Dict[int, Identity] = {}

    def forget(self, session_id: int, *args, **kwargs) -> None:
        self._identities.pop(session_id, None)

    def known(self, session_id: Any) -> Optional[Identity]:
        """The identity of a calling session already read (a call's fast path), else ``None``."""
        return self._identities.get(session_id)

    @inlineCallbacks
    def identity(self, details) -> Generator[Any, Any, Identity]:
        """The identity of the calling session; its department comes from the session's authextra.

        :param details: the call's ``CallDetails``
        :raises ApplicationError: ``not_authorized`` for a caller that is not a client
        """
        session_id = details.caller
        identity = self._identities.get(session_id)
        if identity is None:
            if session_id is None or details.caller_authrole not in CLIENT_ROLES:
                raise ApplicationError(NOT_AUTHORIZED, "the caller has no deptcast identity")
            info = worker.session_info(worker.router_of(self._session), session_id)
            if info is None:
                info = yield self._session.call("wamp.session.get", session_id)
            dept = (info.get("authextra") or {}).get("dept")
            # the authenticator gives every client role its department
            identity = Identity(user=info["authid"], dept=cast(str, dept), role=info["authrole"])
            self._identities[session_id] = identity
        return identity
