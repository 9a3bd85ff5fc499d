"""What one client has done: counts for logs, tests and the curious."""

from collections import deque
from dataclasses import dataclass, field


@dataclass
class Stats:
    """What one client has done (for logs, tests and the curious).

    :ivar live: events received
    :ivar from_history: envelopes received from history
    :ivar delivered: envelopes handed to the application
    :ivar delivered_from_history: of those, how many history brought first
    :ivar duplicates: envelopes dropped as already delivered (or held)
    :ivar live_repeats: events the router delivered twice with the same id
    :ivar gap_fills: history reads for a seq gap that stayed open
    :ivar skipped: seqs given up on (history did not have them)
    :ivar joins: sessions joined (the first one included)
    :ivar reconnects: sessions joined after the first
    :ivar pruned: history reads refused because a position was older than what the node's
        retention kept (``deptcast.error.pruned``): the client went on from the newest page
    :ivar rate_limited: history calls refused as ``rate_limited``, waited out and made again
    :ivar refreshes: newer tokens the open session took (``deptcast.session.refresh``)
    :ivar refresh_reconnects: new sessions opened for a newer token the open one could not take
    :ivar send_retries: send (and send_batch) attempts made again with the same key
    :ivar acks: ``deptcast.ack`` calls answered
    :ivar acked: ids those calls carried
    :ivar history_ids: the ids of the last 1000 envelopes that history brought first
    :ivar live_ids: the ids of the last 1000 events received (repeats and events history
        already brought included)
    """

    live: int = 0
    from_history: int = 0
    delivered: int = 0
    delivered_from_history: int = 0
    duplicates: int = 0
    live_repeats: int = 0
    gap_fills: int = 0
    skipped: int = 0
    joins: int = 0
    reconnects: int = 0
    pruned: int = 0
    rate_limited: int = 0
    refreshes: int = 0
    refresh_reconnects: int = 0
    send_retries: int = 0
    acks: int = 0
    acked: int = 0
    history_ids: "deque[str]" = field(default_factory=lambda: deque(maxlen=1000))
    live_ids: "deque[str]" = field(default_factory=lambda: deque(maxlen=1000))
