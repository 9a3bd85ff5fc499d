"""``GET /health`` and ``GET /health/serving``: whether the node is well, for monitoring, load
balancers, ``deptcast cluster status`` and rolling restarts.

Mounted in the node's web transport as a Twisted resource. Both answer the same small JSON
body (see :mod:`components.core.verdict`), ``Cache-Control: no-store``:

- ``/health``: 200 when the node is healthy (it serves, and every link with every configured
  peer is up both ways), else 503; the body's ``problems`` say what is wrong;
- ``/health/serving``: 200 while the node can take clients (components joined, store up, sends
  accepted, not stopping), even with a peer's link down: what a load balancer should check
  (one dead peer must not take every node out of rotation).

Answering reads state the node keeps anyway (no store round trip): safe to poll every second.
The generated nginx config does not proxy ``/health`` to the public.
"""

from typing import Any, Dict, Optional

import txaio
from twisted.web import resource

from components.edge.http import json_body
from components.service.runtime import Runtime, runtime

txaio.use_twisted()  # a Twisted module: its txaio loggers are Twisted's


class HealthResource(resource.Resource):
    """``/health`` (and ``/health/serving``)."""

    isLeaf = True
    log = txaio.make_logger()

    def __init__(self, extra: Optional[Dict[str, Any]] = None, rt: Optional[Runtime] = None) -> None:
        super().__init__()
        self._runtime = rt or runtime()

    def render_GET(self, request) -> bytes:
        rt = self._runtime
        settings = rt.settings_or_log(self.log, "health")
        if settings is None:
            return json_body(request, 503, {"status": "down", "serving": False,
                                            "problems": ["a setting is missing or malformed; see the node's log"]})
        rest = [p for p in request.postpath if p]
        if rest not in ([], [b"serving"]):
            return json_body(request, 404, {"error": "no such path: use /health or /health/serving"})
        verdict = rt.health.verdict(settings, rt.messages.value)
        ok = verdict.serving if rest else verdict.healthy
        return json_body(request, 200 if ok else 503, verdict.body)
