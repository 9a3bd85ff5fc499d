"""The application's side of a client: what it is handed and what it has finished with.

:class:`~components.core.recovery.Recovery` decides which envelopes go and when; a
:class:`Delivery` hands them over, counts where each came from first (live or history), and
keeps the position: the last ``seq`` per topic the application has finished with, saved to
the :class:`~components.client.state.PositionStore` after each one, so a restarted client
resumes exactly after what its application handled.
"""

from typing import Callable, Dict, Iterable, List, Optional, Sequence

from components.client.state import PositionStore, StateError
from components.client.stats import Stats
from components.core.recovery import Envelope, envelope_key

#: how many live event ids are remembered to count the router's repeats
LIVE_IDS = 10000
#: how many ids of envelopes not delivered yet are remembered with where they came from
ORIGINS = 20000


class Delivery:
    """Hands envelopes to the application and saves its position.

    :param deliver: takes each envelope for the application
    :param stats: the client's counts
    :param state: where positions are kept across restarts (``None``: nowhere)
    :param fail: stops the client for good (a position that cannot be saved)
    """

    def __init__(self, deliver: Callable[[Envelope], None], stats: Stats, state: Optional[PositionStore],
                 fail: Callable[[BaseException], None]) -> None:
        self._deliver = deliver
        self.stats = stats
        self._state = state
        self._fail = fail
        #: the user key the position belongs to, once the first session told it
        self._user: Optional[str] = None
        self._committed: Dict[str, int] = {}
        self._origin: Dict[str, str] = {}
        self._live_ids: Dict[str, None] = {}

    # -- the position

    def resume(self, user: str, topics: Sequence[str], load: bool = True) -> Dict[str, int]:
        """Begin as user ``user`` (``<dept>_<user>``): its saved positions on ``topics``
        (none without a state, or with ``load`` false).

        :raises StateError: if the state cannot be read or is another user's
        :rtype: dict
        """
        self._user = user
        positions: Dict[str, int] = {}
        if self._state is not None and load:
            saved = self._state.load()
            if saved is not None:
                owner, positions = saved
                if owner != user:
                    raise StateError(f"the saved position is {owner}'s; this token is {user}'s")
        self._committed = {t: p for t, p in positions.items() if t in topics}
        return dict(self._committed)

    def commit(self, envelope: Envelope) -> None:
        """The application has finished with ``envelope``: it is part of the saved position.

        :raises StateError: if the position cannot be saved
        """
        key = envelope_key(envelope)
        if key is None or self._user is None:
            return
        topic, seq = key
        if seq is not None and seq > self._committed.get(topic, 0):
            self._committed[topic] = seq
            self.save()

    def keep(self, positions: Dict[str, int]) -> None:
        """Where topics without a position start (a first start): saved now, so a restart
        does not start them again.

        :raises StateError: if the position cannot be saved
        """
        for topic, seq in positions.items():
            self._committed.setdefault(topic, seq)
        self.save()

    def positions(self) -> Dict[str, int]:
        """The last ``seq`` the application has finished with, per topic.

        :rtype: dict
        """
        return dict(self._committed)

    def save(self) -> None:
        """Save the position (once the user is known).

        :raises StateError: after stopping the client, if it cannot be saved
        """
        if self._state is None or self._user is None:
            return
        try:
            self._state.save(self._user, dict(self._committed))
        except StateError as e:
            self._fail(e)
            raise

    # -- handing envelopes over

    def arrived_live(self, envelope: object) -> None:
        """An event came (counted, and a repeat of the router's noticed)."""
        self.stats.live += 1
        if isinstance(envelope, dict):
            msg_id = str(envelope.get("id"))
            self.stats.live_ids.append(msg_id)
            if msg_id in self._live_ids:
                self.stats.live_repeats += 1
            self._live_ids[msg_id] = None
            if len(self._live_ids) > LIVE_IDS:
                self._live_ids.pop(next(iter(self._live_ids)))
            self._origin.setdefault(msg_id, "live")

    def arrived_from_history(self, page: Sequence[object]) -> None:
        """A history answer came."""
        self.stats.from_history += len(page)
        for envelope in page:
            if isinstance(envelope, dict):
                self._origin.setdefault(str(envelope.get("id")), "history")

    def emit(self, envelopes: Iterable[Envelope]) -> None:
        """Hand ``envelopes`` to the application, in this order."""
        for envelope in envelopes:
            self.stats.delivered += 1
            if self._origin.pop(envelope["id"], "live") == "history":
                self.stats.delivered_from_history += 1
                self.stats.history_ids.append(envelope["id"])
            self._deliver(envelope)
        if len(self._origin) > ORIGINS:  # ids that never became deliveries (duplicates): forget them
            self._origin.clear()

    def show(self, envelopes: List[Envelope]) -> None:
        """Hand over the newest few a first start shows (from history, before its position)."""
        for envelope in envelopes:
            self.stats.delivered += 1
            self.stats.delivered_from_history += 1
            self._deliver(envelope)
