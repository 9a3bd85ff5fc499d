"""All deptcast settings, read from the environment and the node directory, here only.

===============================  ==========================================  =====================
variable                         meaning                                     default
===============================  ==========================================  =====================
``DEPTCAST_JWT_SECRET``          HS256 secret for tokens                     ``<node>/jwt.secret``
``DEPTCAST_DB``                  SQLite file path or ``postgresql://`` URL   ``<node>/deptcast.sqlite3``
``DEPTCAST_DEV``                 ``1``: quick-start mode (makes a secret,    off
                                 enables the sign-in form)
``DEPTCAST_MAX_MESSAGE_BYTES``   largest message, UTF-8 bytes                65536
``DEPTCAST_HISTORY_LIMIT``       most envelopes one history call returns     200
``DEPTCAST_RATE``                sends per second per user (0: no limit)     20
``DEPTCAST_BURST``               sends a user may make at once               50
``DEPTCAST_PUBLISHER_RATE``      sends per second per publisher or admin     1000
                                 account (backends; a batch item counts one)
``DEPTCAST_PUBLISHER_BURST``     sends a publisher may make at once          2000
``DEPTCAST_HISTORY_RATE``        history calls per second per user (0: off)  5
``DEPTCAST_HISTORY_BURST``       history calls a user may make at once       20
``DEPTCAST_NODE``                this node's name in logs                    the host name
``DEPTCAST_LEGACY_KEY_PATTERN``  legacy key pattern                          ``{dept}_{user}``
``DEPTCAST_LEGACY_OPEN``         ``1``: legacy clients need no token         off
``DEPTCAST_PEERS``               the other nodes of a cluster (names,        none
                                 comma-separated; set by ``cluster init``)
``DEPTCAST_LINK_WAIT``           seconds a starting cluster node holds       30
                                 sends until its peers' links are up
``DEPTCAST_STORE_TIMEOUT``       seconds a store call may take before the    5
                                 caller gets ``unavailable``
``DEPTCAST_RETENTION_DAYS``      remove messages older than this many days   0 (keep all)
``DEPTCAST_RETENTION_MESSAGES``  keep at most this many messages per topic   0 (keep all)
``DEPTCAST_RETENTION_INTERVAL``  seconds between two retention rounds        60
``DEPTCAST_AUTH_TIMEOUT``        seconds a WAMP connection has to            60
                                 authenticate (0: no bound)
``DEPTCAST_SEND_BUFFER``         bytes a WAMP connection may fall behind     4194304 (4 MiB)
                                 by before it is closed (0: no bound)
``DEPTCAST_CALLS_IN_FLIGHT``     calls a client session may have unanswered  64
                                 (0: no bound)
``DEPTCAST_MAX_SUBSCRIPTIONS``   subscriptions a client session may hold     1000
``DEPTCAST_PRESENCE_RATE``       presence.online calls per second per user   5
                                 (0: no limit)
``DEPTCAST_PRESENCE_BURST``      presence.online calls a user may make at    20
                                 once
``DEPTCAST_MAX_TOKEN_TTL``       longest token lifetime accepted (seconds);  604800 (7 days)
                                 revocations are kept this long
===============================  ==========================================  =====================
"""

import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Tuple

from components.core.legacy import KeyPattern
from components.core.messages import DEFAULT_MAX_MESSAGE_BYTES
from components.core.tokens import DEFAULT_MAX_TOKEN_TTL

SECRET_FILE = "jwt.secret"
SQLITE_FILE = "deptcast.sqlite3"
#: WAMP connections a router worker lets be between their upgrade and their WELCOME at once
#: (``DEPTCAST_MAX_AUTHENTICATING``); the next are answered 503 with a Retry-After
DEFAULT_MAX_AUTHENTICATING = 2500
#: the node directory a checkout's ``crossbar start`` uses
DEFAULT_NODE_DIR = ".crossbar"
#: WebSocket ping interval and timeout (ms) on client transports; proxies must allow longer idles
PING_INTERVAL_MS = 20_000
PING_TIMEOUT_MS = 10_000

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigError(Exception):
    """A setting is missing or malformed; the message says which and how to fix it."""


@dataclass(frozen=True)
class Settings:
    node_dir: Path
    jwt_secret: str
    db: str
    dev: bool = False
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    history_limit: int = 200
    rate: float = 20.0
    burst: int = 50
    publisher_rate: float = 1000.0
    publisher_burst: int = 2000
    history_rate: float = 5.0
    history_burst: int = 20
    node_name: str = "deptcast"
    legacy_key_pattern: str = "{dept}_{user}"
    legacy_open: bool = False
    peers: Tuple[str, ...] = ()
    link_wait: float = 30.0
    store_timeout: float = 5.0
    retention_days: float = 0.0
    retention_messages: int = 0
    retention_interval: float = 60.0
    auth_timeout: float = 60.0
    max_authenticating: int = DEFAULT_MAX_AUTHENTICATING
    send_buffer: int = 4 * 1024 * 1024
    calls_in_flight: int = 64
    max_subscriptions: int = 1000
    presence_rate: float = 5.0
    presence_burst: int = 20
    max_token_ttl: int = DEFAULT_MAX_TOKEN_TTL

    @property
    def db_is_postgres(self) -> bool:
        return is_postgres_url(self.db)


def is_postgres_url(db: str) -> bool:
    """Whether ``db`` names a PostgreSQL database (else it is an SQLite file path).

    :rtype: bool
    """
    return db.startswith(("postgresql://", "postgres://"))


def _flag(env: Mapping[str, str], name: str) -> bool:
    value = env.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name}={value!r}: use 1 or 0")


def _number(env: Mapping[str, str], name: str, default, kind=int, minimum=0):
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} must be at least {minimum}")
    return value


def secret_path(node_dir: Path) -> Path:
    return Path(node_dir) / SECRET_FILE


def read_secret(node_dir: Path, env: Mapping[str, str] = os.environ, create: bool = False) -> str:
    """The JWT secret: ``DEPTCAST_JWT_SECRET``, else the node directory's secret file.

    :param create: make the secret file if it is missing (quick-start mode only)
    :raises ConfigError: if there is no secret and ``create`` is false
    :rtype: str
    """
    value = env.get("DEPTCAST_JWT_SECRET", "")
    if value:
        if len(value.encode()) < 32:
            raise ConfigError("DEPTCAST_JWT_SECRET must be at least 32 bytes long (RFC 7518 3.2)")
        return value
    path = secret_path(node_dir)
    if create and not path.exists():
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process of this node made it first
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(48) + "\n")
    try:
        value = path.read_text().strip()
    except FileNotFoundError:
        raise ConfigError(
            f"no JWT secret: set DEPTCAST_JWT_SECRET, or put one in {path} "
            f"(quick-start mode, DEPTCAST_DEV=1, makes it for you)") from None
    if not value:
        raise ConfigError(f"the secret file {path} is empty")
    return value


def load_settings(node_dir: Optional[Path] = None, env: Mapping[str, str] = os.environ) -> Settings:
    """Read every setting; a component calls this once at start.

    :param node_dir: the Crossbar node directory (a worker's working directory)
    :raises ConfigError: with a message naming the bad setting
    :rtype: Settings
    """
    node_dir = Path(node_dir or os.getcwd()).resolve()
    dev = _flag(env, "DEPTCAST_DEV")
    pattern = env.get("DEPTCAST_LEGACY_KEY_PATTERN", "").strip() or "{dept}_{user}"
    if "{dept}" not in pattern or "{user}" not in pattern:
        raise ConfigError(f"DEPTCAST_LEGACY_KEY_PATTERN={pattern!r} must contain {{dept}} and {{user}}")
    try:
        KeyPattern(pattern)
    except ValueError as e:
        raise ConfigError(f"DEPTCAST_LEGACY_KEY_PATTERN: {e}") from None
    return Settings(
        node_dir=node_dir,
        jwt_secret=read_secret(node_dir, env, create=dev),
        db=env.get("DEPTCAST_DB", "").strip() or str(node_dir / SQLITE_FILE),
        dev=dev,
        max_message_bytes=_number(env, "DEPTCAST_MAX_MESSAGE_BYTES", DEFAULT_MAX_MESSAGE_BYTES, minimum=1),
        history_limit=_number(env, "DEPTCAST_HISTORY_LIMIT", 200, minimum=1),
        rate=_number(env, "DEPTCAST_RATE", 20.0, kind=float),
        burst=_number(env, "DEPTCAST_BURST", 50, minimum=1),
        publisher_rate=_number(env, "DEPTCAST_PUBLISHER_RATE", 1000.0, kind=float),
        publisher_burst=_number(env, "DEPTCAST_PUBLISHER_BURST", 2000, minimum=1),
        history_rate=_number(env, "DEPTCAST_HISTORY_RATE", 5.0, kind=float),
        history_burst=_number(env, "DEPTCAST_HISTORY_BURST", 20, minimum=1),
        node_name=env.get("DEPTCAST_NODE", "").strip() or socket.gethostname(),
        legacy_key_pattern=pattern,
        legacy_open=_flag(env, "DEPTCAST_LEGACY_OPEN"),
        peers=tuple(p.strip() for p in env.get("DEPTCAST_PEERS", "").split(",") if p.strip()),
        link_wait=_number(env, "DEPTCAST_LINK_WAIT", 30.0, kind=float),
        store_timeout=_number(env, "DEPTCAST_STORE_TIMEOUT", 5.0, kind=float, minimum=0.1),
        retention_days=_number(env, "DEPTCAST_RETENTION_DAYS", 0.0, kind=float),
        retention_messages=_number(env, "DEPTCAST_RETENTION_MESSAGES", 0),
        retention_interval=_number(env, "DEPTCAST_RETENTION_INTERVAL", 60.0, kind=float, minimum=0.1),
        auth_timeout=_number(env, "DEPTCAST_AUTH_TIMEOUT", 60.0, kind=float),
        max_authenticating=_number(env, "DEPTCAST_MAX_AUTHENTICATING", DEFAULT_MAX_AUTHENTICATING),
        send_buffer=_number(env, "DEPTCAST_SEND_BUFFER", 4 * 1024 * 1024),
        calls_in_flight=_number(env, "DEPTCAST_CALLS_IN_FLIGHT", 64),
        max_subscriptions=_number(env, "DEPTCAST_MAX_SUBSCRIPTIONS", 1000),
        presence_rate=_number(env, "DEPTCAST_PRESENCE_RATE", 5.0, kind=float),
        presence_burst=_number(env, "DEPTCAST_PRESENCE_BURST", 20, minimum=1),
        max_token_ttl=max_token_ttl(env),
    )


def max_token_ttl(env: Mapping[str, str] = os.environ) -> int:
    """``DEPTCAST_MAX_TOKEN_TTL``: the longest token lifetime a node accepts, in seconds.

    :raises ConfigError: if it is not a whole number of seconds of at least 1
    :rtype: int
    """
    return _number(env, "DEPTCAST_MAX_TOKEN_TTL", DEFAULT_MAX_TOKEN_TTL, minimum=1)
