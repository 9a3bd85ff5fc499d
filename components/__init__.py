"""deptcast: department notifications on a Crossbar.io router cluster.

The package is layered; imports point one way only (``tests/unit/test_layers.py`` checks it):

- :mod:`components.core`: the contract's rules as plain functions (names, targets, tokens,
  policy, messages, rate limit, presence book, legacy keys and frames, settings);
- :mod:`components.store`: the message store behind one interface (SQLite, PostgreSQL);
- :mod:`components.upstream`: every replacement of Autobahn, Crossbar or Twisted behaviour, as
  registered patches checked against the upstream source (imports only :mod:`components.core`);
- :mod:`components.service`: the node's send and history path and what the router worker's
  parts share;
- :mod:`components.wamp`: the router components (the node's composition root, authorizer, api,
  presence, link gate, the web transport's session) and :mod:`components.edge`: the resources
  of the web transport (legacy endpoint, HTTP API, dev token);
- :mod:`components.ops`: node and cluster configuration, processes, the ``deptcast`` command.
"""
