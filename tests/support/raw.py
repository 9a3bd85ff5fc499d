"""Blocking raw-socket clients for the hardening tests: HTTP requests and WebSocket frames
written byte by byte (huge declared lengths, unfinished frames, chunked bodies), and the
router worker's memory as the kernel reports it.

These run in the test process's thread (the node is another process), so a test that
uses them is a plain function, not a pytest-twisted one.
"""

import base64
import os
import socket
import struct
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple


def connect(port: int, timeout: float = 10.0, rcvbuf: Optional[int] = None) -> socket.socket:
    """A TCP connection to the node; ``rcvbuf``: a small receive buffer, set before connecting
    (what the node writes to a peer that does not read backs up sooner)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_response_head(sock: socket.socket, timeout: float) -> Optional[bytes]:
    """Read until the end of an HTTP response head (or the body's first bytes); ``None`` if
    nothing came within ``timeout`` seconds or the peer closed without answering."""
    sock.settimeout(timeout)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        pass
    except ConnectionError:
        pass
    return data or None


def send_until_refused(sock: socket.socket, total: int, chunk: bytes, deadline: float) -> int:
    """Send ``chunk`` repeatedly until ``total`` bytes went out, the peer refuses more
    (reset, closed) or ``deadline`` passes; return the bytes sent."""
    sent = 0
    sock.settimeout(1.0)
    while sent < total and time.monotonic() < deadline:
        try:
            sock.sendall(chunk)
        except (ConnectionError, socket.timeout, BrokenPipeError):
            break
        sent += len(chunk)
    return sent


def http_head(method: str, path: str, headers: Dict[str, str], version: str = "HTTP/1.1") -> bytes:
    lines = [f"{method} {path} {version}"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def http(port: int, method: str, path: str, body: bytes = b"", headers: Optional[Dict[str, str]] = None,
         timeout: float = 10.0) -> Tuple[Optional[int], bytes]:
    """One blocking HTTP/1.0 request (so the answer is not chunked); ``(status, body)``.
    ``Host`` is ``127.0.0.1:<port>`` unless ``headers`` gives one."""
    sock = connect(port, timeout)
    try:
        head = {"Host": f"127.0.0.1:{port}", "Content-Length": str(len(body)), **(headers or {})}
        sock.sendall(http_head(method, path, head, "HTTP/1.0") + body)
        data = b""
        sock.settimeout(timeout)
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    return status_of(data), data.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in data else b""


def status_of(head: Optional[bytes]) -> Optional[int]:
    if not head or not head.startswith(b"HTTP/1."):
        return None
    return int(head.split(b" ", 2)[1])


# -- WebSocket, by hand


def websocket_upgrade(port: int, path: str, protocols: Optional[List[str]] = None,
                      timeout: float = 10.0, rcvbuf: Optional[int] = None) -> Tuple[socket.socket, bytes]:
    """Open a WebSocket with a hand-written handshake; return the socket and the response head.

    :raises AssertionError: if the server does not answer 101
    """
    sock = connect(port, timeout, rcvbuf)
    headers = {"Host": f"127.0.0.1:{port}", "Upgrade": "websocket", "Connection": "Upgrade",
               "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(), "Sec-WebSocket-Version": "13"}
    if protocols:
        headers["Sec-WebSocket-Protocol"] = ", ".join(protocols)
    sock.sendall(http_head("GET", path, headers))
    head = read_response_head(sock, timeout)
    assert status_of(head) == 101, head
    return sock, head


def frame_header(opcode: int, length: int, fin: bool = True) -> Tuple[bytes, bytes]:
    """A masked client frame header announcing ``length`` payload bytes, and its mask."""
    first = (0x80 if fin else 0) | opcode
    if length < 126:
        head = struct.pack("!BB", first, 0x80 | length)
    elif length < 1 << 16:
        head = struct.pack("!BBH", first, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, length)
    mask = os.urandom(4)
    return head + mask, mask


def masked(payload: bytes, mask: bytes) -> bytes:
    n = len(payload)
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big") if n else b""


def send_frame(sock: socket.socket, payload: bytes, opcode: int = 0x1) -> None:
    head, mask = frame_header(opcode, len(payload))
    sock.sendall(head + masked(payload, mask))


def read_close(sock: socket.socket, timeout: float) -> Optional[int]:
    """Wait until the server closes: the close code of its close frame (``1005`` for a close
    frame without one, ``0`` for a TCP close without a close frame), or ``None`` if it is
    still open after ``timeout`` seconds. Other frames are skipped."""
    sock.settimeout(timeout)
    buf = b""
    end = time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            chunk = sock.recv(65536)
            if not chunk:
                return _close_code(buf) or 0
            buf += chunk
            code = _close_code(buf)
            if code is not None:
                return code
    except socket.timeout:
        return None
    except ConnectionError:
        return _close_code(buf) or 0
    return None


def _close_code(buf: bytes) -> Optional[int]:
    """The code of the first close frame in the server frames ``buf``, if complete."""
    i = 0
    while i + 2 <= len(buf):
        opcode = buf[i] & 0x0F
        length = buf[i + 1] & 0x7F
        j = i + 2
        if length == 126:
            if j + 2 > len(buf):
                return None
            length = struct.unpack("!H", buf[j:j + 2])[0]
            j += 2
        elif length == 127:
            if j + 8 > len(buf):
                return None
            length = struct.unpack("!Q", buf[j:j + 8])[0]
            j += 8
        if j + length > len(buf):
            return None
        if opcode == 0x8:
            return struct.unpack("!H", buf[j:j + 2])[0] if length >= 2 else 1005
        i = j + length
    return None


# -- the router worker's memory


def router_worker_pid(controller_pid: int) -> int:
    """The pid of the router worker a ``crossbar start`` controller runs."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == controller_pid and b"router" in cmdline:
            return int(entry.name)
    raise LookupError(f"no router worker under process {controller_pid}")


def rss_bytes(pid: int) -> int:
    """The resident memory of process ``pid``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise LookupError(f"no VmRSS for {pid}")
