"""A synchronous store run in its own thread pool, off the reactor thread."""

from typing import Any, Sequence

from twisted.internet import defer, threads
from twisted.python.threadpool import ThreadPool

from components.core.history import HistoryRequest
from components.core.targets import Target
from components.core.tokens import Identity
from components.store import Store


class ThreadedStore:
    """Runs a synchronous store in its own thread pool and answers with Deferreds.

    :param threads_: how many threads may use the store at once (1 for SQLite)
    """

    def __init__(self, store: Store, reactor: Any, threads_: int = 1) -> None:
        self.store = store
        self._reactor = reactor
        self._pool = ThreadPool(minthreads=1, maxthreads=threads_, name="deptcast-store")
        self._pool.start()

    def _run(self, fn, *args) -> defer.Deferred:
        return threads.deferToThreadPool(self._reactor, self._pool, fn, *args)

    def migrate(self) -> defer.Deferred:
        return self._run(self.store.migrate)

    def append(self, target: Target, sender: Identity, message: str, ts: int) -> defer.Deferred:
        return self._run(self.store.append, target, sender, message, ts)

    def history(self, request: HistoryRequest) -> defer.Deferred:
        return self._run(self.store.history, request)

    def heads(self, topics: Sequence[str]) -> defer.Deferred:
        return self._run(self.store.heads, list(topics))

    @defer.inlineCallbacks
    def close(self):
        try:
            yield self._run(self.store.close)
        finally:
            self._pool.stop()
