"""``GET /metrics``: the node's metrics in the Prometheus text format, written by
``prometheus_client`` (see :mod:`components.core.metrics` for the counters and
:mod:`components.service.metrics` for the gauges read at scrape time).

Mounted in the node's web transport as a Twisted resource; scrape every node directly (the
generated nginx config does not proxy ``/metrics`` to the public).
"""

from typing import Any, Dict, Optional

from prometheus_client.exposition import choose_encoder
from twisted.web import resource

from components.core.metrics import HTTP_RESPONSES, REGISTRY
from components.service.metrics import register_collector
from components.service.runtime import Runtime, runtime


class MetricsResource(resource.Resource):
    """``/metrics``."""

    isLeaf = True

    def __init__(self, extra: Optional[Dict[str, Any]] = None, rt: Optional[Runtime] = None) -> None:
        super().__init__()
        register_collector(rt or runtime())

    def render_GET(self, request) -> bytes:
        # the text format Prometheus asks for in its Accept header (0.0.4 by default, or OpenMetrics)
        encode, content_type = choose_encoder((request.getHeader(b"accept") or b"").decode("latin-1"))
        body = encode(REGISTRY)
        request.setResponseCode(200)
        HTTP_RESPONSES.labels("/metrics", "200").inc()
        request.setHeader(b"content-type", content_type.encode())
        request.setHeader(b"cache-control", b"no-store")
        return body
