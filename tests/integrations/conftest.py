"""Integration test fixtures: real servers on loopback (tests/server/server_helpers.py), tiny checkpoint."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))

from server_helpers import ServerThread, make_settings  # noqa: E402


@pytest.fixture
def start_server(tiny_base_dir, tmp_path):
    """Factory: `start_server(port=0, **settings)` → a running, loaded `ServerThread`; stopped after the test."""
    servers: list[ServerThread] = []

    def start(port: int = 0, **overrides) -> ServerThread:
        server = ServerThread(make_settings(tiny_base_dir, tmp_path / "data", **overrides), port=port).start()
        servers.append(server)
        server.wait_loaded()
        return server

    yield start
    for server in servers:
        if server.thread.is_alive():
            server.stop()
