"""A topic's envelopes in ``seq`` order, each once: the rule a subscriber that fills its own
gaps follows (the legacy fan-out, for old pages that cannot).

Every envelope carries ``seq``, numbered 1, 2, 3, ... per topic in commit order, and a
message is committed before it is published. So a subscriber that has delivered up to
``n`` and then receives ``n + 2`` knows that ``n + 1`` exists in the store: it holds
``n + 2``, reads ``n + 1`` from the store (or waits a moment for it to arrive live: events
sent via different nodes cross different links and may arrive out of order), and delivers
both in order. Anything numbered below what it has delivered is a duplicate and is dropped.

Pure logic, no reactor: :class:`components.edge.fanout.Fanout` adds the timers and the reads.
"""

from typing import Any, Dict, Generic, List, Optional, Tuple, TypeVar

T = TypeVar("T")


def seq_of(envelope: Any) -> Optional[int]:
    """The envelope's ``seq``, or ``None`` if it has none (or not a whole number).

    :rtype: int or None
    """
    if not isinstance(envelope, dict):
        return None
    seq = envelope.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        return None
    return seq


class TopicSequence(Generic[T]):
    """Delivers one topic's items in ``seq`` order, each ``seq`` once.

    :param next_seq: the first ``seq`` to deliver (the topic's head + 1 when the subscriber
        started); ``None``: unknown, the first item offered sets it
    :ivar duplicates: how many offered items were dropped as already delivered (or skipped)
    :ivar skipped: how many numbers were given up on (never delivered)
    """

    def __init__(self, next_seq: Optional[int] = None) -> None:
        self.next: Optional[int] = next_seq
        self.held: Dict[int, T] = {}
        self.duplicates = 0
        self.skipped = 0

    @property
    def has_gap(self) -> bool:
        """Whether items are held behind a missing number."""
        return bool(self.held)

    def missing(self) -> Optional[Tuple[int, int]]:
        """``(first, last)``: the numbers missing before the oldest held item, or ``None``.

        :rtype: tuple or None
        """
        if not self.held or self.next is None:
            return None
        return self.next, min(self.held) - 1

    def offer(self, seq: Optional[int], item: T) -> List[T]:
        """Take one item (live or read from the store); return what may be delivered now,
        in order (possibly nothing: a duplicate, or an item held behind a gap).

        An item without a ``seq`` is delivered as it comes: nothing to order it by.

        :rtype: list
        """
        if seq is None:
            return [item]
        if self.next is None:
            self.next = seq
        if seq < self.next or seq in self.held:
            self.duplicates += 1
            return []
        if seq > self.next:
            self.held[seq] = item
            return []
        out = [item]
        self.next = seq + 1
        while self.next in self.held:
            out.append(self.held.pop(self.next))
            self.next += 1
        return out

    def give_up(self) -> List[T]:
        """Stop waiting for the missing numbers: return every held item in order and carry
        on after the newest (the numbers in between count as :attr:`skipped`).

        :rtype: list
        """
        if not self.held:
            return []
        out = []
        for seq in sorted(self.held):
            self.skipped += seq - self.next
            out.append(self.held.pop(seq))
            self.next = seq + 1
        return out
