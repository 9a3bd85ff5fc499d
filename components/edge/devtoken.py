"""``/dev/token``: the quick-start sign-in form's token minting, on only with ``DEPTCAST_DEV=1``.

Mounted in the node's web transport as a Twisted resource. Outside quick-start mode it
answers 404 to everything, so a production node mints no tokens; in quick-start mode it
answers only clients on the loopback interface (403 for others).

* ``GET /dev/token`` answers ``{"dev": true}`` (the page shows its sign-in form then);
* ``POST /dev/token`` with ``{"user", "dept", "role"}`` answers ``{"token": ...}``.
"""

import json
from typing import Any, Dict, Optional

from twisted.logger import Logger
from twisted.web import resource

from components.core.errors import INVALID_FRAME
from components.core.names import MEMBER
from components.core.tokens import issue_token
from components.edge.http import json_body, peer_host
from components.service.runtime import Runtime, runtime

DEV_TOKEN_TTL = 8 * 3600
_LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


class DevTokenResource(resource.Resource):
    isLeaf = True
    log = Logger()

    def __init__(self, extra: Optional[Dict[str, Any]] = None, rt: Optional[Runtime] = None) -> None:
        super().__init__()
        settings = (rt or runtime()).settings_or_log(self.log, "dev token")
        self._settings = settings if settings is not None and settings.dev else None
        if self._settings is not None:
            self.log.warn("deptcast dev token: quick-start sign-in is ON at /dev/token "
                          "(anyone can mint tokens; never enable DEPTCAST_DEV in production)")

    def _refusal(self, request) -> Optional[bytes]:
        if self._settings is None:
            return json_body(request, 404, {"dev": False, "error": "quick-start sign-in is off"})
        if peer_host(request) not in _LOOPBACK:
            return json_body(request, 403, {"dev": False, "error": "quick-start sign-in answers this machine only"})
        return None

    def render_GET(self, request) -> bytes:
        return self._refusal(request) or json_body(request, 200, {"dev": True})

    def render_POST(self, request) -> bytes:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        try:
            body = json.loads(request.content.read(4096) or b"{}")
            if not isinstance(body, dict):
                raise ValueError("expected a JSON object")
            token = issue_token(self._settings.jwt_secret, str(body.get("user", "")),
                                str(body.get("dept", "")), str(body.get("role") or MEMBER), DEV_TOKEN_TTL)
        except ValueError as e:
            return json_body(request, 400, {"error": INVALID_FRAME, "detail": str(e)})
        return json_body(request, 200, {"token": token})
