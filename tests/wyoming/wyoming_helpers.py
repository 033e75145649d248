"""Wyoming test helpers: a real `makima-tts wyoming` process on a loopback port, and the wyoming
package's own client for it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from server_helpers import TIMEOUT
from wyoming.client import AsyncTcpClient
from wyoming.event import Event


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WyomingProcess:
    def __init__(self, *source: str, env: dict[str, str] | None = None, cwd: Path | None = None):
        self.port = free_port()
        self.log = tempfile.TemporaryFile("w+")  # a file, not a pipe: its log can never block it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "makima_tts.cli", "wyoming", "--uri", f"tcp://127.0.0.1:{self.port}", *source],
            env={**os.environ, **(env or {})}, cwd=cwd, stderr=self.log, text=True)
        deadline = time.monotonic() + TIMEOUT
        while True:  # until it listens
            assert self.proc.poll() is None, f"wyoming server exited: {self.read_log()}"
            assert time.monotonic() < deadline, "wyoming server did not start listening"
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)

    def read_log(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(TIMEOUT)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        return self.read_log()



def client(proc) -> AsyncTcpClient:
    return AsyncTcpClient("127.0.0.1", proc.port, connect_timeout=TIMEOUT, read_timeout=TIMEOUT)


async def read_until(c: AsyncTcpClient, *types: str) -> list[Event]:
    """Events up to and including the first of `types`."""
    seen = []
    while True:
        event = await c.read_event()
        assert event is not None, f"connection closed after {[e.type for e in seen]}"
        seen.append(event)
        if event.type in types:
            return seen
