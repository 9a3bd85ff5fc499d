"""Retention rules as plain functions: what may go, and whether a history request reaches
back past what was removed.

The store keeps, per topic, the *floor* of what retention removed: the highest ``seq`` and the
highest message id it deleted on that topic. A reader whose resume position lies below a
floor would get an answer with a hole in it; it gets ``deptcast.error.pruned`` instead (see
:func:`pruned_refusal`), and reloads the newest page.
"""

from dataclasses import dataclass
from typing import Dict, Mapping, Optional

from components.core.errors import PRUNED, Refused
from components.core.history import HistoryRequest

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class Floor:
    """What retention removed on one topic: up to ``seq`` (every seq at or below it) and the
    highest message ``id`` it deleted there."""

    seq: int
    id: int


def age_cutoff(now_ms: int, days: float) -> int:
    """The ``ts`` below which messages are older than ``days`` days.

    :rtype: int
    """
    return int(now_ms - days * DAY_MS)


def count_cut(top_seq: int, floor_seq: int, keep: int) -> Optional[int]:
    """The seq up to which a topic's messages go so that the newest ``keep`` stay, or
    ``None`` when the topic holds no more than that.

    :param top_seq: the topic's latest seq
    :param floor_seq: what retention removed already on it (0: nothing)
    :rtype: int or None
    """
    cut = top_seq - keep
    return cut if cut > floor_seq else None


def pruned_past(request: HistoryRequest, floors: Mapping[str, Floor]) -> Dict[str, int]:
    """The topics on which ``request`` asks for removed messages, each with the first seq
    still kept; empty when the answer has no hole.

    - with ``positions``: a position below the topic's floor (the messages right after it
      are gone);
    - after an id (not 0): a topic whose floor id is above it (a message after that id was
      removed). ``after`` 0 and ``latest`` ask for what there is, never for what is gone.

    :rtype: dict
    """
    gone: Dict[str, int] = {}
    if request.positions is not None:
        for topic, seq in request.positions.items():
            floor = floors.get(topic)
            if floor is not None and seq < floor.seq:
                gone[topic] = floor.seq + 1
    elif request.after and not request.latest:
        for topic in request.topics:
            floor = floors.get(topic)
            if floor is not None and floor.id > request.after:
                gone[topic] = floor.seq + 1
    return gone


def pruned_refusal(gone: Mapping[str, int]) -> Refused:
    """The refusal a reader gets when its position is older than what is kept.

    :rtype: Refused
    """
    topics = ", ".join(f"{topic} (kept from seq {first})" for topic, first in sorted(gone.items()))
    return Refused(PRUNED, "the messages after your position were removed by this service's retention "
                           f"on {topics}; load the newest page (latest=true) and continue from there")


class PrunedHistory(Exception):
    """A store's history answer would have a hole where retention removed messages.

    :param gone: topic to the first seq still kept there
    """

    def __init__(self, gone: Mapping[str, int]) -> None:
        super().__init__(dict(gone))
        self.gone = dict(gone)
