"""A deliberately minimal blocking WebSocket client on a raw socket, for what a well-behaved library will
not do: send invalid UTF-8 in a text frame, or stop reading (with a tiny receive buffer)."""

from __future__ import annotations

import base64
import os
import socket
import struct


class RawWebSocket:
    def __init__(self, port: int, path: str = "/api/v1/speak", rcvbuf: int | None = None, timeout: float = 60.0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise ConnectionError("handshake: connection closed")
            head += chunk
        self.status = int(head.split(b" ", 2)[1])

    def send_frame(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def send_text(self, payload: bytes) -> None:
        self.send_frame(0x1, payload)

    def _exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("connection closed")
            data += chunk
        return data

    def read_frame(self) -> tuple[int, bytes]:
        b0, b1 = self._exact(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self._exact(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self._exact(8))
        return b0 & 0x0F, self._exact(n)

    def read_until_close(self) -> tuple[list[tuple[int, bytes]], int | None]:
        """Frames until a close frame (returns its code) or the end of the connection (None)."""
        frames = []
        try:
            while True:
                opcode, payload = self.read_frame()
                if opcode == 0x8:
                    return frames, struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                frames.append((opcode, payload))
        except (ConnectionError, OSError):
            return frames, None

    def close(self) -> None:
        self.sock.close()
