"""``/dev/token``: the quick-start sign-in form's token minting, on only with ``DEPTCAST_DEV=1``.

Mounted in the node's web transport as a Twisted resource. Outside quick-start mode it
answers 404 to everything, so a production node mints no tokens; in quick-start mode it
answers only requests from a person on this machine (403 for others): a loopback peer, no
proxy headers, a ``Host`` (and ``Origin``) naming this machine
(:func:`components.core.localonly.local_refusal`). Generated production nginx configs do
not pass ``/dev/`` on at all.

* ``GET /dev/token`` answers ``{"dev": true}`` (the page shows its sign-in form then);
* ``POST /dev/token`` with ``{"user", "dept", "role"}`` answers ``{"token": ...}``.
"""

from typing import Any, Dict, Optional

import txaio
from twisted.web import resource

from components.core.errors import INVALID_FRAME, Refused
from components.core.jsonlimits import load_json
from components.core.localonly import local_refusal
from components.core.names import MEMBER, PUBLISHER
from components.core.tokens import issue_token
from components.edge.http import error_body, header, json_body, peer_host
from components.service.runtime import Runtime, runtime

txaio.use_twisted()  # a Twisted module: its txaio loggers are Twisted's

DEV_TOKEN_TTL = 8 * 3600
#: the sign-in form's body: a user id, a department code and a role
MAX_FORM_BYTES = 4096


class DevTokenResource(resource.Resource):
    isLeaf = True
    log = txaio.make_logger()

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
        names = [name.decode("latin-1") for name, _ in request.requestHeaders.getAllRawHeaders()]
        why = local_refusal(peer_host(request), header(request, b"host"), header(request, b"origin"), names)
        if why is not None:
            self.log.info("deptcast dev token: refused a request from {peer}: {why}", peer=peer_host(request), why=why)
            return json_body(request, 403, {"dev": False,
                                            "error": f"quick-start sign-in answers this machine only: {why}"})
        return None

    def render_GET(self, request) -> bytes:
        return self._refusal(request) or json_body(request, 200, {"dev": True})

    def render_POST(self, request) -> bytes:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        try:
            # bounded in size and depth before it is parsed (components.core.jsonlimits)
            body = load_json(request.content.read(MAX_FORM_BYTES + 1) or b"{}", MAX_FORM_BYTES)
            if not isinstance(body, dict):
                raise ValueError("expected a JSON object")
            assert self._settings is not None  # _refusal answered otherwise
            role = str(body.get("role") or MEMBER)
            if role not in (MEMBER, PUBLISHER):
                # the open sign-in form of quick-start mode never mints admin tokens
                raise ValueError(f"the sign-in form gives the roles {MEMBER} and {PUBLISHER}")
            token = issue_token(self._settings.jwt_secret, str(body.get("user", "")),
                                str(body.get("dept", "")), role, DEV_TOKEN_TTL)
        except Refused as e:
            return error_body(request, e)
        except ValueError as e:
            return json_body(request, 400, {"error": INVALID_FRAME, "detail": str(e)})
        return json_body(request, 200, {"token": token})
