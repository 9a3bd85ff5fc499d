"""The rules a subscriber follows to hand each envelope to its application exactly once, in
per-topic order, across reconnects and node failover. Plain functions and classes: no
connection, no clock, no framework (the client in :mod:`components.client` drives them).

The facts they rest on (the contract, ``deptcast.history``):

- every envelope of a topic carries ``seq``, 1, 2, 3, ... in commit order; within a topic
  ``seq`` and ``id`` grow together, so the last ``seq`` delivered per topic (the *position*)
  says exactly what a subscriber has;
- an envelope is stored before it is published, so once one has arrived, every envelope of
  its topic with a smaller ``seq`` is in the store too;
- ``deptcast.history(positions={topic: seq})`` answers the envelopes past each position,
  oldest first, a bounded page at a time: read it until an answer is empty and nothing
  stored is left out, or, for a topic, until the read reaches a live event held during it
  (the client subscribes before it reads, so every later envelope arrives live: the held
  events continue the read without a hole, see :meth:`Recovery.lowest_held`);
- events relayed by different nodes may arrive out of order, so a missing ``seq`` is given
  :data:`GAP_GRACE` seconds to arrive before history is asked for it;
- with retention on, a position older than what the node kept is refused
  (``deptcast.error.pruned``, not a retry): the client goes on from the newest page
  (:meth:`Recovery.offer_newest`), and a topic that page does not show moves to the first
  position the node accepts (:class:`~components.core.positionsearch.KeptSearch`);
- history calls are rate-limited per user: a ``deptcast.error.rate_limited`` refusal is
  waited out (:func:`~components.core.retry.rate_limit_wait`) and the same call made again.

Per topic, the order, the gaps and their grace period are the rule every subscriber follows
(:class:`~components.core.sequence.TopicSequence`); :class:`Recovery` keeps one per topic and
adds what a client that reconnects needs: topics whose start is not known yet, the read of a
join, and history reads that tell which held envelopes may stop waiting. Where a topic
starts, or where retention left it, is found by :mod:`components.core.positionsearch`; the
saved position's file is :mod:`components.core.statefile`.

``tests/vectors/recovery.json`` states these rules as cases that this client's tests and the
browser's run alike.
"""

from collections import OrderedDict
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, cast

from components.core.errors import Refused
from components.core.sequence import TopicSequence
from components.core.targets import envelope_topic

#: seconds an out-of-order envelope is held before the missing ones are read from history
GAP_GRACE = 1.0
#: envelopes asked of one ``deptcast.history`` call (the node caps it at its own limit)
HISTORY_PAGE = 1000
#: envelopes asked of the first history call of a client that has no position yet
START_PAGE = 100
#: how many delivered ids are remembered to drop a repeat that carries no ``seq``
REMEMBER_IDS = 10000
#: the largest ``seq`` or position accepted (JSON numbers stay exact up to here)
MAX_SEQ = 2 ** 53 - 1
#: ``pruned`` refusals in a row (no page read between) after which a read gives up: a node
#: that refuses every position is broken, not pruning
MAX_PRUNED_IN_A_ROW = 8

Envelope = Dict[str, Any]


def id_number(msg_id: object) -> Optional[int]:
    """The number an envelope id stands for (ids are zero-padded decimal), or ``None``.

    :rtype: int or None
    """
    if isinstance(msg_id, str) and 0 < len(msg_id) <= 32 and msg_id.isascii() and msg_id.isdigit():
        return int(msg_id)
    return None


def envelope_key(envelope: object) -> Optional[Tuple[str, Optional[int]]]:
    """``(topic, seq)`` of an envelope (``seq`` ``None`` if it has none: stored before seq
    existed), or ``None`` if it is not an envelope a client can place.

    :rtype: tuple or None
    """
    if not isinstance(envelope, dict) or id_number(envelope.get("id")) is None:
        return None
    try:
        topic = envelope_topic(envelope)
    except Refused:
        return None
    seq = envelope.get("seq")
    if seq is None:
        return topic, None
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 < seq <= MAX_SEQ:
        return None
    return topic, seq


class Recovery:
    """What one subscriber has delivered and holds, per topic.

    Feed every envelope that arrives, live or from history, to :meth:`offer`; it returns the
    envelopes to hand to the application now, in per-topic order, each once. A topic whose
    position is not known yet (a client with no saved position) holds everything until
    :meth:`start_at` says where it begins.

    :param topics: the subscriber's topics; envelopes of other topics are dropped
    :param positions: the last ``seq`` already delivered per topic (a saved position)
    :param grace: seconds a gap may stay open before :meth:`due` asks for history
    :param remember: how many delivered ids to remember (for envelopes without ``seq``)
    """

    def __init__(self, topics: Iterable[str], positions: Optional[Mapping[str, int]] = None,
                 grace: float = GAP_GRACE, remember: int = REMEMBER_IDS) -> None:
        self.topics: Tuple[str, ...] = tuple(topics)
        self.grace = grace
        #: per topic, its order; each held item is (envelope, the fill mark current when it arrived)
        self._order: Dict[str, TopicSequence[Tuple[Envelope, int]]] = {
            t: TopicSequence(positions[t] + 1 if positions and t in positions else None) for t in self.topics}
        self._recent: "OrderedDict[str, None]" = OrderedDict()
        self._remember = remember
        self._mark = 0
        self._joining = False
        self._repeats = 0
        #: envelopes dropped because they are not envelopes of this subscriber's topics
        self.ignored = 0

    # -- what it knows

    @property
    def duplicates(self) -> int:
        """Envelopes dropped because they were delivered (or held) already."""
        return self._repeats + sum(o.duplicates for o in self._order.values())

    @property
    def skipped(self) -> int:
        """Seqs given up on: history, read to the end, did not have them."""
        return sum(o.skipped for o in self._order.values())

    def positions(self) -> Dict[str, int]:
        """The last ``seq`` delivered per topic (topics whose start is known).

        :rtype: dict
        """
        return {t: o.position for t, o in self._order.items() if o.position is not None}

    def unknown(self) -> List[str]:
        """The topics whose start is not known yet.

        :rtype: list
        """
        return [t for t, o in self._order.items() if o.position is None]

    def held(self) -> int:
        """How many envelopes are held back (out of order, or of a topic not started yet).

        :rtype: int
        """
        return sum(len(o.held) for o in self._order.values())

    def held_envelopes(self, topic: str) -> List[Envelope]:
        """The envelopes of ``topic`` held back, in seq order.

        :rtype: list
        """
        order = self._order.get(topic)
        return [order.held[s][0] for s in sorted(order.held)] if order is not None else []

    def lowest_held(self, topics: Iterable[str]) -> Dict[str, int]:
        """Per topic of ``topics`` whose start is known, the lowest ``seq`` of the live
        events held back. The subscriber subscribed before it reads history, so every envelope
        of the topic past that seq arrives live: once a read's position reaches the seq just
        before it, the read of that topic is complete (on a busy topic an empty answer may
        never come, each page bringing what was stored since the one before).

        :rtype: dict
        """
        out = {}
        for topic in topics:
            order = self._started(topic)
            if order is not None and order.held:
                out[topic] = min(order.held)
        return out

    def remember(self, envelopes: Iterable[Envelope]) -> None:
        """Note envelopes handed to the application outside :meth:`offer` (the newest few a
        first start shows), so a repeat is dropped."""
        for envelope in envelopes:
            self._remember_id(envelope["id"])

    def gaps(self) -> Dict[str, List[Tuple[int, int]]]:
        """Per topic, the missing ``seq`` ranges (inclusive) below the envelopes held.

        :rtype: dict
        """
        return {t: ranges for t, o in self._order.items() if (ranges := o.gaps())}

    def due(self, now: float) -> Dict[str, int]:
        """The positions to read history from for the gaps open at least ``grace`` seconds.

        :rtype: dict
        """
        return {t: o.next - 1 for t, o in self._order.items() if o.next is not None and o.due(now, self.grace)}

    def next_due(self) -> Optional[float]:
        """When the oldest open gap becomes due, or ``None`` if none is open.

        :rtype: float or None
        """
        # the same sum as TopicSequence.due(): a timer set for that instant finds the gap due
        opened = [o.gap_since for o in self._order.values() if o.gap_since is not None]
        return min(opened) + self.grace if opened else None

    # -- what arrives

    def offer(self, envelope: object, now: float, live: bool = True) -> List[Envelope]:
        """Take one envelope; return the envelopes to deliver now.

        A live event at its topic's position + 1 is delivered, with the held ones that
        continue it; one further on is held (a gap: :meth:`due` asks history for it after
        ``grace``); during a join every live event is held until :meth:`end_fill`. From
        history (``live=False``; see :meth:`offer_page`) an envelope above the position is
        delivered at once: history is complete, so a seq it skips is not stored (and never
        will be: a smaller seq is stored first). Held events wait for the end of the read.

        :rtype: list
        """
        key = envelope_key(envelope)
        if key is None or key[0] not in self._order:
            self.ignored += 1
            return []
        topic, seq = key
        envelope = cast(Envelope, envelope)  # envelope_key placed it: a dict with an id
        msg_id = envelope["id"]
        if msg_id in self._recent:
            self._repeats += 1
            return []
        if seq is None:
            # stored before seq existed: nothing to order it by, so it is delivered once by id
            self._remember_id(msg_id)
            return [envelope]
        order = self._order[topic]
        if not live and order.position is not None:
            return self._delivered(order.take(seq, (envelope, self._mark)))
        if not order.hold(seq, (envelope, self._mark)):
            return []
        if order.position is None or (live and self._joining):
            return []  # held until start_at() says where the topic begins / the join's read is done
        out = self._delivered(order.release())
        order.note_gap(now)
        return out

    def offer_page(self, page: Sequence[object], now: float) -> List[Envelope]:
        """Take one ``deptcast.history`` answer; return what to deliver, in id order.

        :rtype: list
        """
        out: List[Envelope] = []
        for envelope in page:
            out += self.offer(envelope, now, live=False)
        return _in_id_order(out)

    def offer_newest(self, page: Sequence[object], topics: Sequence[str], now: float
                     ) -> Tuple[List[Envelope], List[str]]:
        """Take a newest page (``deptcast.history(latest=True)``), read after a position of
        ``topics`` was refused as pruned: for those topics only, what lies past their
        positions is delivered and each topic shown takes its highest seq in the page as its
        position (a seq the page skips is gone, or older than the page: given up).

        :returns: ``(envelopes to deliver, in id order; the topics the page shows)``
        :rtype: tuple
        """
        wanted = set(topics)
        out: List[Envelope] = []
        shown: List[str] = []
        for envelope in page:
            key = envelope_key(envelope)
            if key is None or key[0] not in wanted or self._started(key[0]) is None:
                continue
            if key[1] is not None and key[0] not in shown:
                shown.append(key[0])
            out += self.offer(envelope, now, live=False)
        return _in_id_order(out), [t for t in self.topics if t in shown]

    def skip_to(self, topic: str, seq: int, now: float) -> List[Envelope]:
        """Move ``topic``'s position forward to ``seq``: the seqs up to it are not stored any
        more (retention removed them). Held envelopes up to it are dropped, later ones released
        (after the join's read, during a join).

        :rtype: list
        """
        order = self._started(topic)
        if order is None or order.position is None or seq <= order.position:
            return []
        order.skip_to(seq)
        if self._joining:
            return []
        out = self._delivered(order.release())
        order.note_gap(now)
        return out

    def begin_join(self) -> None:
        """A session has joined and subscribed: hold every live event until its read
        (:meth:`begin_fill` ... :meth:`end_fill` with ``join=True``) is done."""
        self._joining = True

    def drop_held(self) -> None:
        """The connection is lost: forget the held events and open gaps (the next join
        reads them from history by position)."""
        for order in self._order.values():
            order.drop_held()
        self._joining = False

    def start_at(self, topic: str, seq: int, now: float) -> List[Envelope]:
        """Say where a topic begins: ``seq`` is its last envelope the subscriber does not
        want (its position); held envelopes up to it are dropped, later ones released.

        :rtype: list
        """
        order = self._order.get(topic)
        if order is None or order.position is not None:
            return []
        order.start(seq)
        if self._joining:
            return []  # the join's read goes on from here; what is held waits for it
        out = self._delivered(order.release())
        order.restart_gap(now)
        return out

    def begin_fill(self) -> int:
        """Mark the start of a history read that goes on until an empty answer (or, per
        topic, until it reaches a held live event: :meth:`lowest_held`); pass the mark to
        :meth:`end_fill` when it is done.

        :rtype: int
        """
        self._mark += 1
        return self._mark

    def end_fill(self, mark: int, topics: Optional[Sequence[str]] = None,
                 now: float = 0.0, join: bool = False, reached: Iterable[str] = ()) -> List[Envelope]:
        """History was read past the positions of ``topics`` (default: all) until an empty
        answer, begun at ``mark``; return what to deliver, in id order. An envelope held
        since before then was stored before the read began, and so was every smaller
        ``seq`` of its topic: those history did not bring do not exist, so stop waiting for
        them and deliver. Envelopes held since the read began wait for a new grace period if
        a hole is left below them. ``join``: the read of a join, whose held events go now.
        ``reached``: topics whose read ended at a held live event instead of an empty answer
        (:meth:`lowest_held`); history did not read past their held events, so a hole left
        above those waits for a new grace period too.

        :rtype: list
        """
        out: List[Envelope] = []
        if join:
            self._joining = False
        reached = set(reached)
        for topic in topics if topics is not None else self.topics:
            order = self._started(topic)
            if order is None:
                continue
            out += self._delivered(order.release())
            early = [s for s, (_, arrived) in order.held.items() if arrived < mark and topic not in reached]
            if early:
                out += self._delivered(order.give_up(max(early) + 1))
            order.restart_gap(now)
        return _in_id_order(out)

    # -- helpers

    def _started(self, topic: str) -> Optional[TopicSequence[Tuple[Envelope, int]]]:
        """The order of ``topic`` if it is one of the subscriber's and its start is known."""
        order = self._order.get(topic)
        return order if order is not None and order.position is not None else None

    def _delivered(self, held: List[Tuple[Envelope, int]]) -> List[Envelope]:
        """The envelopes of items leaving a topic's order, remembered by id."""
        out = []
        for envelope, _ in held:
            self._remember_id(envelope["id"])
            out.append(envelope)
        return out

    def _remember_id(self, msg_id: str) -> None:
        self._recent[msg_id] = None
        if len(self._recent) > self._remember:
            self._recent.popitem(last=False)


def _in_id_order(envelopes: List[Envelope]) -> List[Envelope]:
    """Envelopes delivered together go out in id order (per topic that is seq order)."""
    return sorted(envelopes, key=lambda e: id_number(e["id"]) or 0)
