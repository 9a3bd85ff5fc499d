"""A topic's envelopes in ``seq`` order, each once: the rule every subscriber that fills its
own gaps follows. The Python client's recovery (:class:`components.core.recovery.Recovery`)
keeps one per topic, and so does the legacy fan-out for old pages that cannot
(:class:`components.edge.fanout.Fanout`).

Every envelope carries ``seq``, numbered 1, 2, 3, ... per topic in commit order, and a
message is committed before it is published. So a subscriber that has delivered up to
``n`` and then receives ``n + 2`` knows that ``n + 1`` exists in the store: it holds
``n + 2`` (a *gap*), gives ``n + 1`` a grace period to arrive live (events sent via
different nodes cross different links and may arrive out of order), then reads it from the
store, and delivers both in order. Anything numbered below what it has delivered is a
duplicate and is dropped. A read of the store is complete: a number it skips is not stored
and never will be, so the subscriber stops waiting for it.

Pure logic, no clock: the subscriber passes the time in (``now``) and sets its own timers.
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
        started); ``None``: unknown, the first item :meth:`offer` takes sets it (or
        :meth:`start`)
    :ivar duplicates: how many offered items were dropped as already delivered (or held)
    :ivar skipped: how many numbers were given up on (never delivered)
    :ivar gap_since: when the gap open now was noticed (:meth:`note_gap`), or ``None``
    """

    def __init__(self, next_seq: Optional[int] = None) -> None:
        self.next: Optional[int] = next_seq
        self.held: Dict[int, T] = {}
        self.duplicates = 0
        self.skipped = 0
        self.gap_since: Optional[float] = None

    # -- what it knows

    @property
    def position(self) -> Optional[int]:
        """The last ``seq`` delivered (or given up on), ``None`` while the start is unknown.

        :rtype: int or None
        """
        return None if self.next is None else self.next - 1

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

    def gaps(self) -> List[Tuple[int, int]]:
        """Every range of numbers (inclusive) missing below the held items.

        :rtype: list
        """
        if self.next is None:
            return []
        ranges, expect = [], self.next
        for seq in sorted(self.held):
            if seq > expect:
                ranges.append((expect, seq - 1))
            expect = seq + 1
        return ranges

    # -- the grace period of a gap

    def note_gap(self, now: float) -> None:
        """A gap is open now: its grace period starts at ``now`` unless it started already."""
        if self.held and self.gap_since is None:
            self.gap_since = now

    def restart_gap(self, now: float) -> None:
        """Give what is still held (if anything) a new grace period from ``now``."""
        self.gap_since = now if self.held else None

    def due(self, now: float, grace: float) -> bool:
        """Whether the open gap has waited ``grace`` seconds: time to read the store."""
        return self.gap_since is not None and self.gap_since + grace <= now

    # -- what arrives

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
        if not self.hold(seq, item):
            return []
        return self.release()

    def hold(self, seq: int, item: T) -> bool:
        """Keep an item without delivering anything (:meth:`release` does); ``False`` if it
        is a duplicate (delivered or held already), which is dropped."""
        if (self.next is not None and seq < self.next) or seq in self.held:
            self.duplicates += 1
            return False
        self.held[seq] = item
        return True

    def release(self) -> List[T]:
        """The held items that continue the sequence without a hole, in order.

        :rtype: list
        """
        out: List[T] = []
        if self.next is not None:
            while self.next in self.held:
                out.append(self.held.pop(self.next))
                self.next += 1
        if not self.held:
            self.gap_since = None
        return out

    def take(self, seq: int, item: T) -> List[T]:
        """Take an item from a complete read of the store (the start must be known): it is
        delivered at once. The numbers the read skipped below it are not stored, so they are
        given up; held items below it exist all the same and go first. Held items above it
        stay held (the read brings them too).

        :rtype: list
        """
        assert self.next is not None, "take() needs a known start"
        if seq < self.next:
            self.duplicates += 1
            return []
        below = sorted(s for s in self.held if s < seq)
        out = [self.held.pop(s) for s in below]
        self.skipped += seq - self.next - len(below)
        if self.held.pop(seq, None) is not None:
            self.duplicates += 1  # it came live as well
        self.next = seq + 1
        out.append(item)
        if not self.held:
            self.gap_since = None
        return out

    # -- moving the start

    def start(self, position: int) -> None:
        """Say where an unknown start is: ``position`` is the last number not wanted. Held
        items up to it are dropped; :meth:`release` hands over those that follow it."""
        self.next = position + 1
        self._drop_through(position)

    def skip_to(self, position: int) -> None:
        """The numbers up to ``position`` are gone for good (retention removed them): move
        past them; held items up to it are dropped. Nothing happens if the start is unknown or
        already past it."""
        if self.next is None or position < self.next:
            return
        self.skipped += position - self.next + 1
        self.next = position + 1
        self._drop_through(position)

    def give_up(self, below: Optional[int] = None) -> List[T]:
        """Stop waiting for the numbers missing below ``below`` (default: every missing
        number, past the newest held item): return the held items that may go now, in order,
        and carry on after them (the numbers in between count as :attr:`skipped`).

        :rtype: list
        """
        if below is None:
            if not self.held:
                return []
            below = max(self.held) + 1
        out: List[T] = []
        while self.next is not None and below > self.next:
            lower = [s for s in self.held if s < below]
            step = min(lower) if lower else below
            self.skipped += step - self.next
            self.next = step
            out += self.release()
            if not lower:
                break
        return out

    def drop_held(self) -> None:
        """Forget the held items and the open gap (a subscriber that lost its connection
        reads them again)."""
        self.held.clear()
        self.gap_since = None

    def _drop_through(self, position: int) -> None:
        for seq in [s for s in self.held if s <= position]:
            del self.held[seq]
