"""The names of the contract the client uses beyond calling a procedure: how to tell a node
that does not offer a procedure (older than the client), and the receipts topic of a user.
Every other name is :mod:`components.core.names`'s.
"""

from components.core.names import (  # noqa: F401 (re-exported for the client's modules)
    ADMIN, CLOSE_REVOKED, CLOSE_TOKEN_EXPIRED, DELIVERED, PENDING, PROC_ACK, PROC_ADMIN_REVOKE, PROC_RECEIPTS,
    PROC_RECIPIENTS, PROC_ROSTER, PROC_SEND_BATCH, PROC_SESSION_REFRESH, RECIPIENT_STATES, SEEN, SEND_BATCH_MAX,
    TOPIC_RECEIPTS,
)

# -- the router's answers to a call of a procedure the node does not offer
#: nobody registered it (a node older than the client)
NO_SUCH_PROCEDURE = "wamp.error.no_such_procedure"
#: the role may not call it; a node older than the client answers this for procedures it does
#: not know (its authorizer allows only those it knows)
ROUTER_NOT_AUTHORIZED = "wamp.error.not_authorized"


def receipts_topic(user_key: str) -> str:
    """The topic of a sender's receipt counts."""
    return TOPIC_RECEIPTS + user_key


def not_offered(uri: str) -> bool:
    """Whether a call failed because the node does not offer the procedure to this client at all."""
    return uri in (NO_SUCH_PROCEDURE, ROUTER_NOT_AUTHORIZED)
