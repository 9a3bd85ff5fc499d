"""deptcast's one seam to upstream: every replacement of Autobahn, Crossbar or Twisted
behaviour, and every read of their internals, as a registered patch.

One module per patched area:

- :mod:`~components.upstream.hotpath`: the per-message paths (send, receive, write);
- :mod:`~components.upstream.bounds`: what a connection may send before it authenticates, and
  how far behind it may fall after;
- :mod:`~components.upstream.web`: request bodies capped, upgraded connections trimmed;
- :mod:`~components.upstream.wampjson`: WAMP JSON nesting bounded;
- :mod:`~components.upstream.logs`: per-connection log lines and pretty-printing;
- :mod:`~components.upstream.rlinks`: the router links' duplicate handlers, and link states;
- :mod:`~components.upstream.mesh`: forwarded events kept off the other nodes' links, and
  each link pulling only its own node's topics;
- :mod:`~components.upstream.roles`: the client roles' authorizer asked in-process;
- :mod:`~components.upstream.worker`: reads of the router worker's internals;
- :mod:`~components.upstream.localcalls`: calls of the node's own procedures answered in-process;
- :mod:`~components.upstream.highlights`: debug lines' highlighted arguments made only when written;
- :mod:`~components.upstream.broker`: the node's own publications in one plain pass of the broker;
- :mod:`~components.upstream.sessions`: cutting off a session that ignores its GOODBYE; meta events
  published only where someone listens.

Each patch records what it replaces, the sha256 of the upstream source it was checked
against, why it is needed, and what would let it go (:class:`~components.upstream.registry.Patch`).
The node installs them all in one place, its composition root
(:class:`components.wamp.root.RootComponent`), with :func:`install`, before its transports
listen; a patch whose upstream source changed is not applied, and the node says so.

The seam imports nothing of deptcast's but :mod:`components.core`: what a patch needs of the
node (the router, the authorizer, the link state) is passed in (:class:`Wiring`).

``python -m components.upstream`` prints every patch; ``--check`` compares the digests with the
installed upstream and prints those that changed.
"""

# localcalls registers (and so is installed) before bounds: bounds' limit on a session's calls
# in flight wraps the dealer's processCall as localcalls left it, so it holds for every call
from components.upstream import localcalls  # (first: see above)
from components.upstream import bounds, broker, highlights, hotpath, logs, mesh, rlinks, roles, sessions, wampjson, web
from components.upstream import worker
from components.upstream.registry import PATCHES, Patch, Status, Wiring, install, statuses, summary, uninstall

#: the modules of the seam, one per patched area
AREAS = (hotpath, localcalls, bounds, web, wampjson, logs, rlinks, mesh, roles, worker, sessions, highlights, broker)

__all__ = ["AREAS", "PATCHES", "Patch", "Status", "Wiring", "install", "statuses", "summary", "uninstall"]
