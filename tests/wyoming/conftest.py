"""Wyoming test fixtures: a real makima-tts server (tests/server/server_helpers.py, tiny checkpoint) and
a real `makima-tts wyoming` process bridging to it on a loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))

from server_helpers import TIMEOUT, ServerThread, make_settings  # noqa: E402


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


@pytest.fixture(scope="module")
def tts_server(tiny_base_dir, tmp_path_factory):
    srv = ServerThread(make_settings(tiny_base_dir, tmp_path_factory.mktemp("data"), max_frames=12)).start()
    srv.wait_loaded()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def wyoming(tts_server):
    """`makima-tts wyoming --url <tts_server>` (module-wide)."""
    proc = WyomingProcess("--url", tts_server.http)
    yield proc
    proc.stop()


@pytest.fixture
def start_bridge(tiny_base_dir, tmp_path):
    """Factory: `start_bridge(**settings)` → (its ServerThread, a `makima-tts wyoming` process for it)."""
    made = []

    def start(**overrides):
        srv = ServerThread(make_settings(tiny_base_dir, tmp_path / "data", **overrides)).start()
        srv.wait_loaded()
        made.append(srv)
        proc = WyomingProcess("--url", srv.http)
        made.append(proc)
        return srv, proc

    yield start
    for thing in reversed(made):
        thing.stop()
