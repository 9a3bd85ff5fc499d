"""A WAMP-over-WebSocket client written by hand (blocking sockets, JSON): it sees every frame
the node sends, exactly as sent, and does only what a test tells it (reads or not, answers a
GOODBYE or not)."""

import json
import socket
import struct
import time
from typing import Any, List, Optional

from components.core import names
from tests.support import raw

HELLO, WELCOME, ABORT, CHALLENGE, AUTHENTICATE, GOODBYE = 1, 2, 3, 4, 5, 6
ERROR, PUBLISH, SUBSCRIBE, SUBSCRIBED, EVENT, CALL, RESULT = 8, 16, 32, 33, 36, 48, 50
CLOSE = "close"


class RawWamp:
    """One connection to ``/ws`` with the ``wamp.2.json`` subprotocol.

    :param rcvbuf: the socket's receive buffer (small: the node's writes back up sooner)
    """

    def __init__(self, port: int, rcvbuf: Optional[int] = None, timeout: float = 10.0) -> None:
        self.sock, _ = raw.websocket_upgrade(port, "/ws", ["wamp.2.json"], timeout, rcvbuf)
        self.buf = b""
        #: messages :meth:`call` read past while waiting for its answer, for :meth:`receive`
        self.pending: List[Any] = []
        self.session: Optional[int] = None
        self._request = 0

    def send(self, message: List[Any]) -> None:
        raw.send_frame(self.sock, json.dumps(message).encode())

    def request(self) -> int:
        self._request += 1
        return self._request

    def join(self, token: str) -> List[Any]:
        """HELLO, the ticket, WELCOME: answers the WELCOME."""
        self.send([HELLO, names.REALM, {"roles": {"subscriber": {}, "caller": {}, "publisher": {}},
                                        "authmethods": ["ticket"]}])
        challenge = self.receive()
        assert challenge[0] == CHALLENGE, challenge
        self.send([AUTHENTICATE, token, {}])
        welcome = self.receive()
        assert welcome[0] == WELCOME, welcome
        self.session = welcome[1]
        return welcome

    def subscribe(self, topic: str) -> int:
        req = self.request()
        self.send([SUBSCRIBE, req, {}, topic])
        answer = self.receive()
        assert answer[:2] == [SUBSCRIBED, req], answer
        return answer[2]

    def call(self, procedure: str, *args: Any, **kwargs: Any) -> List[Any]:
        """Call and answer the RESULT or ERROR (other messages meanwhile are kept for
        :meth:`receive`)."""
        req = self.request()
        self.send([CALL, req, {}, procedure, list(args), kwargs])
        kept = []
        try:
            while True:
                answer = self._next(10.0)
                assert answer is not None, f"no answer to {procedure}"
                if answer[0] in (RESULT, ERROR) and req in answer[1:3]:
                    return answer
                kept.append(answer)
                assert answer[0] != CLOSE, answer
        finally:
            self.pending.extend(kept)

    def receive(self, timeout: float = 10.0) -> Any:
        """The next WAMP message (a list), :data:`CLOSE` and the code for a close frame or a
        closed connection, or ``None`` if nothing came within ``timeout`` seconds."""
        if self.pending:
            return self.pending.pop(0)
        return self._next(timeout)

    def _next(self, timeout: float) -> Any:
        end = time.monotonic() + timeout
        while True:
            frame = self._frame()
            if frame is not None:
                opcode, payload = frame
                if opcode == 0x8:
                    return [CLOSE, struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005]
                if opcode == 0x9:  # ping: answer, as a client must
                    self._control(0xA, payload)
                    continue
                if opcode in (0x1, 0x2):
                    return json.loads(payload)
                continue
            left = end - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return None
            except ConnectionError:
                return [CLOSE, 0]
            if not chunk:
                return [CLOSE, 0]
            self.buf += chunk

    def _frame(self):
        buf = self.buf
        if len(buf) < 2:
            return None
        length = buf[1] & 0x7F
        j = 2
        if length == 126:
            if len(buf) < 4:
                return None
            length = struct.unpack("!H", buf[2:4])[0]
            j = 4
        elif length == 127:
            if len(buf) < 10:
                return None
            length = struct.unpack("!Q", buf[2:10])[0]
            j = 10
        if len(buf) < j + length:
            return None
        self.buf = buf[j + length:]
        return buf[0] & 0x0F, buf[j:j + length]

    def _control(self, opcode: int, payload: bytes) -> None:
        head, mask = raw.frame_header(opcode, len(payload))
        self.sock.sendall(head + raw.masked(payload, mask))

    def close(self) -> None:
        self.sock.close()

