"""Server test fixtures: real servers on loopback with the tiny checkpoint (see server_helpers)."""

from __future__ import annotations

from pathlib import Path

import pytest
from server_helpers import ServerThread, make_settings


@pytest.fixture(scope="session")
def tiny_model(tiny_base_dir) -> Path:
    """The tiny random Base checkpoint of tests/conftest.py (built once per test session)."""
    return tiny_base_dir


@pytest.fixture
def start_server(tiny_model, tmp_path):
    """Factory: `start_server(**settings)` → a running `ServerThread`; all are stopped after the test."""
    servers: list[ServerThread] = []

    def start(data_dir: Path | None = None, sndbuf: int | None = None, **overrides) -> ServerThread:
        settings = make_settings(tiny_model, data_dir or tmp_path / "data", **overrides)
        server = ServerThread(settings, sndbuf=sndbuf).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        if server.thread.is_alive():
            server.stop()


@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory):
    """One shared server (loaded model, default settings) for tests that need nothing special."""
    srv = ServerThread(make_settings(tiny_model, tmp_path_factory.mktemp("data"))).start()
    srv.wait_loaded()
    yield srv
    srv.stop()
