"""Where a topic's position is, found by asking history one row at a time: a client's first
start (:func:`fresh_start`, then :class:`StartSearch` for a topic the first page does not
show), and where retention left a topic whose position was refused as pruned
(:class:`KeptSearch`). Plain objects: each says which position to ask next and learns from
the answer; the client makes the calls (``deptcast.history(positions={topic: x}, limit=1)``
answers ``seq`` x+1, or nothing, or ``deptcast.error.pruned``).
"""

from typing import Dict, List, Optional, Sequence, Tuple, cast

from components.core.recovery import MAX_SEQ, Envelope, envelope_key, id_number


def fresh_start(page: Sequence[object], topics: Sequence[str], replay: int = 0
                ) -> Tuple[List[Envelope], Dict[str, int], Optional[str], List[str]]:
    """Read the first answer of a client with no saved position: ``deptcast.history(latest=True)``
    asked *after* subscribing. What it holds is from before the client's time; everything
    newer arrives live.

    :param page: the answer (oldest first: the newest envelopes of the client's topics)
    :param replay: how many of the newest to hand to the application anyway (``--history N``)
    :returns: ``(replay envelopes oldest first, {topic: position} for the topics the page
        shows, the newest id in the page or None, topics the page does not show)``. A topic
        the page does not show is either empty or older than the whole page:
        :class:`StartSearch` finds its position, unless the page is empty (then every topic
        is empty: an answer holds at least one envelope when there are any).
    :rtype: tuple
    """
    mine: List[Envelope] = []
    starts: Dict[str, int] = {}
    for envelope in page:
        key = envelope_key(envelope)
        if key is None or key[0] not in topics:
            continue
        mine.append(cast(Envelope, envelope))  # envelope_key read it: a dict with an id
        topic, seq = key
        if seq is not None:
            starts[topic] = max(starts.get(topic, 0), seq)
    if not mine:
        return [], {t: 0 for t in topics}, None, []
    newest = max(mine, key=lambda e: id_number(e["id"]) or 0)["id"]
    shown = sorted(mine, key=lambda e: id_number(e["id"]) or 0)[-replay:] if replay > 0 else []
    return shown, starts, newest, [t for t in topics if t not in starts]


class StartSearch:
    """Find one topic's position at a client's start: its highest ``seq`` among envelopes
    with an id at or below ``newest`` (the newest id of the client's first history answer),
    asking ``deptcast.history(positions={topic: x}, limit=1)``, which answers ``seq`` x+1.
    Doubling, then halving: about 2·log2(n) one-row calls for a topic of n envelopes.

    :param topic: the topic
    :param newest: the newest id of the first answer (from :func:`fresh_start`)
    """

    def __init__(self, topic: str, newest: str) -> None:
        self.topic = topic
        self._newest = id_number(newest) or 0
        #: a seq known to be before the start (0: nothing is)
        self.low = 0
        #: a seq known to be after the start, or not to exist (None: none known yet)
        self.high: Optional[int] = None

    @property
    def done(self) -> bool:
        return self.high is not None and self.high <= self.low + 1

    @property
    def position(self) -> int:
        """The answer, once :attr:`done`.

        :rtype: int
        """
        return self.low

    def learn(self, envelope: object) -> None:
        """Use any envelope of the topic seen meanwhile (a live one narrows the search too)."""
        key = envelope_key(envelope)
        if key is None or key[0] != self.topic or key[1] is None:
            return
        seq = key[1]
        if (id_number(cast(Envelope, envelope)["id"]) or 0) <= self._newest:  # a key: a dict with an id
            self.low = max(self.low, seq)
        else:
            self.high = seq if self.high is None else min(self.high, seq)

    def next_position(self) -> int:
        """The position to ask history from next (it answers ``seq`` position + 1).

        :rtype: int
        """
        if self.high is None:
            probe = max(1, 2 * self.low)
        else:
            probe = (self.low + self.high) // 2
        return probe - 1

    def refused(self, asked: int) -> None:
        """``positions={topic: asked}`` was refused as pruned: seq ``asked + 1`` was removed by
        retention, so the start is past it (what retention removed is not wanted either)."""
        self.low = max(self.low, asked + 1)
        if self.high is not None and self.high <= self.low:
            self.high = self.low + 1

    def answer(self, asked: int, page: Sequence[object]) -> None:
        """Take the answer to ``positions={topic: asked}``: seq ``asked + 1`` or nothing."""
        before = (self.low, self.high)
        for envelope in page:
            self.learn(envelope)
        if not any((k := envelope_key(e)) is not None and k[0] == self.topic for e in page):
            # nothing past `asked`: the topic ends at or before it
            self.high = asked + 1 if self.high is None else min(self.high, asked + 1)
        if (self.low, self.high) == before:
            # an answer that teaches nothing (a store that numbers oddly): settle for what is known
            self.high = self.low + 1


class KeptSearch:
    """Find where retention left a topic: the first position the node accepts
    (``deptcast.history(positions={topic: x}, limit=1)`` is refused as pruned exactly for the
    ``x`` below the seq up to which the topic's messages were removed). Asks the position
    itself first; if it is refused, the position + 1, + 3, + 7, ... (doubling the step) until
    one is accepted, then halves between the last refused and the first accepted.

    :param topic: the topic
    :param position: its position (the first one asked)
    """

    def __init__(self, topic: str, position: int) -> None:
        self.topic = topic
        self._first = position
        self._refusals = 0
        #: the highest position refused as pruned (None: none yet)
        self.refused_at: Optional[int] = None
        #: the lowest position accepted (None: none yet)
        self.accepted_at: Optional[int] = None

    @property
    def done(self) -> bool:
        return self.accepted_at is not None and (self.refused_at is None or self.accepted_at - self.refused_at <= 1)

    @property
    def position(self) -> int:
        """The answer, once :attr:`done`: the first position the node accepts.

        :rtype: int
        """
        assert self.accepted_at is not None
        return self.accepted_at

    def next_position(self) -> int:
        """The position to ask next.

        :raises ValueError: if the node refused every position up to :data:`MAX_SEQ`
        :rtype: int
        """
        if self.refused_at is None:
            return self._first
        if self.accepted_at is None:
            probe = self.refused_at + 2 ** (self._refusals - 1)
            if probe > MAX_SEQ:
                raise ValueError(f"the node refuses every position of {self.topic} as pruned")
            return probe
        return (self.refused_at + self.accepted_at) // 2

    def refused(self, asked: int) -> None:
        """The node refused ``asked`` as pruned."""
        self._refusals += 1
        self.refused_at = asked if self.refused_at is None else max(self.refused_at, asked)

    def accepted(self, asked: int) -> None:
        """The node answered ``asked`` (whatever the answer holds)."""
        self.accepted_at = asked if self.accepted_at is None else min(self.accepted_at, asked)

