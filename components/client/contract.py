"""Names of the contract the client uses that :mod:`components.core.names` and
:mod:`components.core.errors` do not hold (the nodes' own modules add them as they implement
them; then these become imports from there).
"""

# -- procedures
PROC_SEND_BATCH = "deptcast.send_batch"
PROC_ACK = "deptcast.ack"
PROC_RECEIPTS = "deptcast.receipts"
PROC_RECIPIENTS = "deptcast.recipients"
PROC_ROSTER = "deptcast.roster"
PROC_SESSION_REFRESH = "deptcast.session.refresh"
PROC_ADMIN_REVOKE = "deptcast.admin.revoke"

#: a sender's receipt counts: ``TOPIC_RECEIPTS + "<dept>_<user>"``
TOPIC_RECEIPTS = "deptcast.receipts."

# -- why a node ends a session (GOODBYE reasons)
#: the token's ``exp`` passed and no newer token was handed over
CLOSE_TOKEN_EXPIRED = "deptcast.close.token_expired"
#: an admin revoked the user: a client does not come back by itself
CLOSE_REVOKED = "deptcast.close.revoked"

#: the role of operators' tokens
ADMIN = "admin"

# -- the router's answers to a call of a procedure the node does not offer
#: nobody registered it (a node older than the client)
NO_SUCH_PROCEDURE = "wamp.error.no_such_procedure"
#: the role may not call it; a node older than the client answers this for procedures it does
#: not know (its authorizer allows only those it knows)
ROUTER_NOT_AUTHORIZED = "wamp.error.not_authorized"

#: receipt states (``deptcast.ack`` takes the first two; ``deptcast.recipients`` all three)
DELIVERED = "delivered"
SEEN = "seen"
PENDING = "pending"
RECIPIENT_STATES = (SEEN, DELIVERED, PENDING)

#: the most items ``deptcast.send_batch`` takes in one call
SEND_BATCH_MAX = 1000


def receipts_topic(user_key: str) -> str:
    """The topic of a sender's receipt counts."""
    return TOPIC_RECEIPTS + user_key


def not_offered(uri: str) -> bool:
    """Whether a call failed because the node does not offer the procedure to this client at all."""
    return uri in (NO_SUCH_PROCEDURE, ROUTER_NOT_AUTHORIZED)
