"""The old service's ``/webSocket/<key>`` protocol as plain functions: keys, handshakes, out-frames.

The old service took ``ws://HOST/webSocket/<key>`` where the key joins a department and a
user, ``"ping"`` heartbeats and ``{"to": ..., "message": ...}`` JSON frames (read by
:mod:`components.core.frames`), and sent every message out as a bare text frame. Everything
here is pure: the Twisted adapter (:mod:`components.edge.legacy`) wires it to sockets.
"""

import re
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence, Tuple
from urllib.parse import unquote

from components.core import names
from components.core.errors import INVALID_FRAME, INVALID_TOKEN, NOT_AUTHORIZED, Refused
from components.core.tokens import DEFAULT_MAX_TOKEN_TTL, Grant, Identity, read_token

#: the path segment the endpoint is mounted at (``/webSocket/<key>``)
MOUNT = "webSocket"
#: the WebSocket subprotocol the endpoint answers a page that passes its token in
#: ``Sec-WebSocket-Protocol`` (a browser fails the connection unless the answer is one it offered)
PROTOCOL = "deptcast.legacy"
#: a page passes its token as the subprotocol ``deptcast.token.<JWT>`` beside :data:`PROTOCOL`:
#: a JWT is base64url parts joined by dots, so the value is a valid header token, and no
#: proxy logs request headers the way it logs the request line (``?token=`` ends up in
#: nginx's error log whenever an upstream is down)
TOKEN_PROTOCOL_PREFIX = "deptcast.token."
_NAME_CHARS = re.compile(names.NAME_CHARS + "*")
_UNSAFE_REASON_CHARS = re.compile(r"[^\x20-\x7e]")


class HandshakeRefused(Exception):
    """A legacy client the endpoint refuses before the WebSocket opens.

    :param status: the HTTP status of the refusal (400, 401, 403, 503)
    :param uri: the contract's error URI
    :param detail: a readable reason; it goes into the HTTP status line
    """

    def __init__(self, status: int, uri: str, detail: str) -> None:
        super().__init__(status, uri, detail)
        self.status = status
        self.uri = uri
        self.detail = detail

    @property
    def reason(self) -> str:
        """The status-line reason: ``<uri>: <detail>``, printable ASCII only (the key in it
        comes from the client, and a status line must not carry CR/LF)."""
        return safe_reason(f"{self.uri}: {self.detail}")

    def __str__(self) -> str:
        return f"{self.status} {self.reason}"


def safe_reason(text: str, limit: int = 200) -> str:
    """``text`` cut to ``limit`` characters with everything but printable ASCII replaced by ``?``.

    :rtype: str
    """
    return _UNSAFE_REASON_CHARS.sub("?", text[:limit])


class KeyPattern:
    """The configurable shape of a legacy key, e.g. ``{dept}_{user}`` (the default).

    The text around the two placeholders is literal. The pattern must split every key in
    exactly one way, so the text between the placeholders must contain a character that
    department codes and user ids cannot hold (anything but letters, digits, ``.``, ``-``).

    :param pattern: the pattern, with ``{dept}`` and ``{user}`` each exactly once
    :raises ValueError: if the pattern lacks a placeholder or is ambiguous
    """

    def __init__(self, pattern: str) -> None:
        if pattern.count("{dept}") != 1 or pattern.count("{user}") != 1:
            raise ValueError(f"the legacy key pattern {pattern!r} must contain {{dept}} and {{user}} once each")
        parts = re.split(r"(\{dept\}|\{user\})", pattern)
        # parts: [prefix, first placeholder, middle, second placeholder, suffix]
        middle = parts[2]
        if _NAME_CHARS.fullmatch(middle):
            raise ValueError(
                f"the legacy key pattern {pattern!r} is ambiguous: the text between {{dept}} and {{user}} "
                f"({middle!r}) must contain a character other than letters, digits, '.' and '-'")
        regex = "".join(
            f"(?P<{part[1:-1]}>{names.NAME_PATTERN})" if part in ("{dept}", "{user}") else re.escape(part)
            for part in parts)
        self.pattern = pattern
        self._regex = re.compile(regex)

    def parse(self, key: str) -> Tuple[str, str]:
        """Split ``key`` into ``(dept, user)``.

        :raises HandshakeRefused: 400 ``invalid_frame`` if the key does not fit the pattern
        :rtype: tuple
        """
        found = self.match(key)
        if found is None:
            raise HandshakeRefused(400, INVALID_FRAME,
                                   f"the key {key[:80]!r} does not fit the pattern {self.pattern}")
        return found

    def match(self, key: object) -> Optional[Tuple[str, str]]:
        """``(dept, user)`` if ``key`` fits the pattern, else ``None``.

        :rtype: tuple or None
        """
        found = self._regex.fullmatch(key) if isinstance(key, str) and key else None
        if found is None or not (names.is_name(found.group("dept")) and names.is_name(found.group("user"))):
            return None  # the regex checks the characters; is_name the length too
        return found.group("dept"), found.group("user")

    def format(self, dept: str, user: str) -> str:
        """The key of ``user`` in ``dept``.

        :rtype: str
        """
        return self.pattern.replace("{dept}", dept).replace("{user}", user)


def key_from_path(path: str, mount: str = MOUNT) -> str:
    """The key in a request path ``.../<mount>/<key>`` (percent-escapes decoded).

    :raises HandshakeRefused: 400 if there is no key, or more than one segment after the mount
    :rtype: str
    """
    segments = path.split("?", 1)[0].split("/")
    try:
        at = len(segments) - 1 - segments[::-1].index(mount)
    except ValueError:
        at = -1
    rest = segments[at + 1:] if at >= 0 else []
    if len(rest) == 2 and rest[1] == "":
        rest = rest[:1]  # a trailing slash
    if len(rest) != 1 or not rest[0]:
        raise HandshakeRefused(400, INVALID_FRAME, f"use /{mount}/<key>; the path was {path[:120]!r}")
    return unquote(rest[0])


@dataclass(frozen=True)
class LegacyClient:
    """Who a legacy socket is and what it receives.

    :ivar identity: the sender identity its frames are sent as
    :ivar key: the key it connected with
    :ivar open_mode: whether it came in without a token (compatibility mode)
    :ivar protocol: the subprotocol to answer (:data:`PROTOCOL` if the client offered it)
    :ivar grant: what its token grants (``exp``, ``iat``); ``None`` in open mode
    """

    identity: Identity
    key: str
    open_mode: bool = False
    protocol: Optional[str] = None
    grant: Optional[Grant] = None

    @property
    def topics(self) -> Tuple[str, ...]:
        """The topics whose messages this socket receives: its department, All, its own user."""
        return legacy_topics(self.identity)


def legacy_topics(identity: Identity) -> Tuple[str, ...]:
    """Its department, ``All`` and its own direct messages: what the old page received.

    :rtype: tuple
    """
    return names.client_topics(identity.dept, identity.user)


def _first(params: Mapping[str, Sequence[str]], name: str) -> Optional[str]:
    values = params.get(name) or []
    return values[0] if values else None


def protocol_token(protocols: Sequence[str]) -> Optional[str]:
    """The token a page offers as a WebSocket subprotocol, if any.

    A page passes ``["deptcast.legacy", "deptcast.token.<JWT>"]`` as ``new WebSocket``'s second
    argument; the endpoint answers ``deptcast.legacy`` (see :attr:`LegacyClient.protocol`).

    :param protocols: the subprotocols the client offered, in order
    :raises HandshakeRefused: 400 ``invalid_frame`` for several tokens, or a token without
        ``deptcast.legacy`` to answer with (the browser would fail the connection)
    :rtype: str or None
    """
    tokens = [p[len(TOKEN_PROTOCOL_PREFIX):] for p in protocols if p.startswith(TOKEN_PROTOCOL_PREFIX)]
    if not tokens:
        return None
    if len(tokens) > 1:
        raise HandshakeRefused(400, INVALID_FRAME, "offer one deptcast.token.<JWT> subprotocol, not several")
    if PROTOCOL not in protocols:
        raise HandshakeRefused(400, INVALID_FRAME, f"offer the subprotocol {PROTOCOL} beside deptcast.token.<JWT>")
    return tokens[0]


def check_handshake(path: str, params: Mapping[str, Sequence[str]], pattern: KeyPattern,
                    secret: str, open_mode: bool, protocols: Sequence[str] = (),
                    max_ttl: int = DEFAULT_MAX_TOKEN_TTL) -> LegacyClient:
    """Decide whether a legacy client may connect, and as whom.

    The key must fit ``pattern``. With a token (the subprotocol ``deptcast.token.<JWT>``, see
    :func:`protocol_token`, else ``?token=``), the token must verify and its ``sub`` and
    ``dept`` must be the key's; the client gets the token's role. Without a token the client
    is refused, unless ``open_mode`` is on: then it is a ``member`` of the key's department.

    :param path: the request path, ``/webSocket/<key>``
    :param params: the query parameters, each name to its list of values
    :param protocols: the WebSocket subprotocols the client offered
    :raises HandshakeRefused: 400 bad key, 401 missing/invalid/expired token, 403 key not the token's
    :rtype: LegacyClient
    """
    key = key_from_path(path)
    dept, user = pattern.parse(key)
    token = protocol_token(protocols) or _first(params, "token")
    answer = PROTOCOL if PROTOCOL in protocols else None
    if not token:
        if open_mode:
            return LegacyClient(Identity(user=user, dept=dept, role=names.MEMBER), key, open_mode=True,
                                protocol=answer)
        raise HandshakeRefused(401, INVALID_TOKEN, "no token given: offer the subprotocols deptcast.legacy and "
                                                   "deptcast.token.<JWT>, or add ?token=<JWT> to the URL")
    try:
        grant = read_token(secret, token, max_ttl=max_ttl)
    except Refused as e:
        raise HandshakeRefused(401, e.uri, e.detail) from None
    identity = grant.identity
    if identity.dept != dept:
        raise HandshakeRefused(403, NOT_AUTHORIZED,
                               f"the key's department {dept!r} is not the token's ({identity.dept!r})")
    if identity.user != user:
        raise HandshakeRefused(403, NOT_AUTHORIZED,
                               f"the key's user {user!r} is not the token's subject ({identity.user!r})")
    return LegacyClient(identity, key, protocol=answer, grant=grant)


def contract_target(to: Any, pattern: KeyPattern) -> Any:
    """The ``to`` of a legacy frame in the contract's form.

    Old pages address a user by the same key they connect with; under a configured pattern
    (say ``{user}@{dept}``) that key becomes the contract's ``<dept>_<user>``. Anything else --
    a department code, ``All``, a contract user key, garbage -- passes unchanged, to be judged
    by ``check_send``.
    """
    parsed = pattern.match(to)
    return names.user_key(*parsed) if parsed is not None else to


def message_frame(envelope: Any) -> Optional[bytes]:
    """The outgoing text of an event: exactly the message text, as the old service sent it.

    :returns: ``None`` if the event carries no envelope with a text message
    :rtype: bytes or None
    """
    if isinstance(envelope, dict):
        message = envelope.get("message")
        if isinstance(message, str):
            return message.encode("utf-8")
    return None
