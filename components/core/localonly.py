"""Whether an HTTP request comes from a person on this machine: the rule of the quick-start
sign-in form (``/dev/token``), which mints any token for anyone who may use it.

The TCP peer alone does not say it: behind a proxy on the same machine (the cluster's nginx)
every request comes from 127.0.0.1, and a web page on another site can make a developer's
browser send requests to ``localhost`` (DNS rebinding: the page's own host name resolves to
127.0.0.1, so the request carries that name in ``Host``). So a request is local only if

- its TCP peer is the loopback address (``127.0.0.1``, ``::1``),
- it carries no header a proxy adds (``Forwarded``, ``X-Forwarded-*``, ``X-Real-IP``, ``Via``),
- its ``Host`` names this machine (``localhost``, ``127.0.0.1`` or ``[::1]``, any port), and
- its ``Origin``, if it has one, does so too.
"""

from typing import Iterable, Optional
from urllib.parse import urlsplit

#: the TCP peers that are this machine
LOOPBACK_PEERS = frozenset({"127.0.0.1", "::1", "::ffff:127.0.0.1"})
#: the host names that are this machine, in a ``Host`` header (any port)
LOCAL_HOST_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
#: request headers that mark a request a proxy passed on
PROXY_HEADERS = ("forwarded", "x-real-ip", "via")
PROXY_HEADER_PREFIX = "x-forwarded-"


def is_local_host_name(host: str) -> bool:
    """Whether a ``Host`` header value (``name[:port]``) names this machine.

    :rtype: bool
    """
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:8080
        name, sep, rest = host[1:].partition("]")
        if not sep or (rest and not _is_port_suffix(rest)):
            return False
    else:
        name, sep, port = host.partition(":")
        if sep and not port.isdigit():
            return False
    return name in LOCAL_HOST_NAMES


def _is_port_suffix(text: str) -> bool:
    return text.startswith(":") and text[1:].isdigit()


def local_refusal(peer: str, host: Optional[str], origin: Optional[str], header_names: Iterable[str]) -> Optional[str]:
    """Why a request is not from a person on this machine, or ``None`` if it is.

    :param peer: the TCP peer's address
    :param host: the ``Host`` header (``None`` if missing)
    :param origin: the ``Origin`` header (``None`` if missing)
    :param header_names: the names of every request header
    :rtype: str or None
    """
    if peer not in LOOPBACK_PEERS:
        return "the request does not come from this machine"
    for name in header_names:
        lowered = name.lower()
        if lowered in PROXY_HEADERS or lowered.startswith(PROXY_HEADER_PREFIX):
            return f"the request came through a proxy ({lowered})"
    if host is None or not is_local_host_name(host):
        return "the request's Host is not this machine"
    if origin is not None:
        netloc = urlsplit(origin.strip()).netloc if "://" in origin else ""
        if not netloc or not is_local_host_name(netloc):
            return "the request's Origin is not this machine"
    return None
