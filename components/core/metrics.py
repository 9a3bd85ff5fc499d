"""The node's Prometheus metrics: counters and histograms the parts of the router worker
update as things happen (``GET /metrics`` writes them in the text format with
``prometheus_client``).

Gauges that describe a moment (sessions, links, subscribers, process CPU and memory) are
read when Prometheus scrapes, by the collector in :mod:`components.service.metrics`.

Every label has a small, fixed set of values (interfaces, the contract's error names, topic
kinds, store operations): never a user, a department or a topic name.
"""

from typing import Optional

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

# no `*_created` series beside every counter: they double the output and nobody graphs them
disable_created_metrics()

#: the node's own registry (one router worker per node: one registry per process)
REGISTRY = CollectorRegistry(auto_describe=True)

#: the interfaces a message arrives by
INTERFACES = ("wamp", "legacy", "http", "batch")

#: seconds: store calls take 0.1-10 ms normally, up to the store deadline when it is in trouble
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

SENDS_ACCEPTED = Counter(
    "deptcast_sends_accepted", "Messages accepted (stored and published), by the interface they came by.",
    ["interface"], registry=REGISTRY)
SENDS_REFUSED = Counter(
    "deptcast_sends_refused",
    "Sends refused, by interface and reason (the contract's error name: invalid_frame, not_authorized, "
    "too_large, rate_limited, unavailable, invalid_token, token_expired).",
    ["interface", "reason"], registry=REGISTRY)
EVENTS_PUBLISHED = Counter(
    "deptcast_events_published", "Envelopes published to the router, by topic kind (dept, all, user).",
    ["kind"], registry=REGISTRY)
LEGACY_DELIVERIES = Counter(
    "deptcast_legacy_deliveries", "Message frames written to legacy /webSocket sockets.", registry=REGISTRY)
HISTORY_SECONDS = Histogram(
    "deptcast_history_seconds", "deptcast.history calls and how long they took, by outcome (ok, refused).",
    ["outcome"], buckets=LATENCY_BUCKETS, registry=REGISTRY)
STORE_SECONDS = Histogram(
    "deptcast_store_operation_seconds",
    "Store operations (append, history, migrate, ping, prune_older, prune_topic...) and how long each took in "
    "its thread (a call past its deadline is counted when it ends).",
    ["operation"], buckets=LATENCY_BUCKETS, registry=REGISTRY)
STORE_ERRORS = Counter(
    "deptcast_store_errors",
    "Store operations that failed, by operation and kind (deadline: no answer in DEPTCAST_STORE_TIMEOUT; "
    "unavailable: down, locked or unreachable; error: anything else).",
    ["operation", "kind"], registry=REGISTRY)
STORE_GROUP_SIZES = Histogram(
    "deptcast_store_group_messages",
    "Messages per group commit: sends and batch items written in one store transaction.",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000), registry=REGISTRY)
HTTP_RESPONSES = Counter(
    "deptcast_http_responses", "JSON answers of the node's HTTP endpoints, by path and status.",
    ["path", "status"], registry=REGISTRY)
RETENTION_PRUNED = Counter(
    "deptcast_retention_pruned_messages",
    "Messages removed by retention, by rule (age: DEPTCAST_RETENTION_DAYS, count: DEPTCAST_RETENTION_MESSAGES).",
    ["rule"], registry=REGISTRY)
CONNECTIONS_CLOSED = Counter(
    "deptcast_connections_closed",
    "Connections (WAMP /ws, legacy /webSocket) the node closed by a bound, by reason (slow_reader: its outgoing "
    "buffer fell too far behind; "
    "auth_timeout: not authenticated in time; too_large: a message over the limit, before or after "
    "authentication; protocol_error: a malformed WAMP message).",
    ["reason"], registry=REGISTRY)
AUTHENTICATING_REFUSED = Counter(
    "deptcast_connections_refused_busy",
    "WebSocket upgrades of /ws answered 503 (with Retry-After) because DEPTCAST_MAX_AUTHENTICATING connections "
    "were between their upgrade and their WELCOME.",
    registry=REGISTRY)
AUTHENTICATING = Gauge(
    "deptcast_connections_authenticating",
    "WebSocket connections of /ws upgraded and not yet authenticated (at most DEPTCAST_MAX_AUTHENTICATING).",
    registry=REGISTRY)
CALLS_REFUSED = Counter(
    "deptcast_calls_refused_in_flight",
    "Calls refused (rate_limited) because the session had DEPTCAST_CALLS_IN_FLIGHT calls unanswered.",
    registry=REGISTRY)

SESSIONS_ENDED = Counter(
    "deptcast_sessions_ended",
    "Client sessions (WAMP and legacy) the node ended, by reason (token_expired: the token's exp passed "
    "unrenewed; revoked: an admin revoked the user).",
    ["reason"], registry=REGISTRY)

#: the HTTP paths counted by name; anything else is counted as "other" (labels stay few)
HTTP_PATHS = ("/api/send", "/api/send_batch", "/api/revoke", "/dev/token", "/health", "/health/serving", "/metrics")


def reason_of(uri: str) -> str:
    """The label for an error URI: its last part (``deptcast.error.rate_limited`` -> ``rate_limited``).

    :rtype: str
    """
    return uri.rsplit(".", 1)[-1] if uri.startswith("deptcast.error.") else "other"


def count_refusal(interface: str, uri: str) -> None:
    """Count one refused send that ``interface`` turned away before the message service saw it
    (a bad token, a body or frame that is not a send)."""
    SENDS_REFUSED.labels(interface, reason_of(uri)).inc()


def http_path(path: Optional[bytes]) -> str:
    """The ``path`` label of a request path.

    :rtype: str
    """
    text = (path or b"").decode("latin-1").rstrip("/") or "/"
    return text if text in HTTP_PATHS else "other"
