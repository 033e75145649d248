"""Client test fixtures: real servers on loopback (tests/server/server_helpers.py) with the tiny checkpoint."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))

from server_helpers import server_factory  # noqa: E402


@pytest.fixture
def start_server(tiny_base_dir, tmp_path):
    """Factory: `start_server(port=0, **settings)` → a running, loaded `ServerThread`; stopped after the test."""
    with server_factory(tiny_base_dir, tmp_path / "data", loaded=True) as start:
        yield start


@pytest.fixture(scope="module")
def server(tiny_base_dir, tmp_path_factory):
    """One shared server (loaded model, default test settings) for tests that need nothing special."""
    with server_factory(tiny_base_dir, tmp_path_factory.mktemp("data"), loaded=True) as start:
        yield start()
