"""Server test fixtures: real servers on loopback with the tiny checkpoint (see server_helpers)."""

from __future__ import annotations

from pathlib import Path

import pytest
from server_helpers import server_factory


@pytest.fixture(scope="session")
def tiny_model(tiny_base_dir) -> Path:
    """The tiny random Base checkpoint of tests/conftest.py (built once per test session)."""
    return tiny_base_dir


@pytest.fixture
def start_server(tiny_model, tmp_path):
    """Factory: `start_server(port=0, data_dir=None, sndbuf=None, **settings)` → a running `ServerThread`
    (its model may still be loading); all are stopped after the test."""
    with server_factory(tiny_model, tmp_path / "data", loaded=False) as start:
        yield start


@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory):
    """One shared server (loaded model, default settings) for tests that need nothing special."""
    with server_factory(tiny_model, tmp_path_factory.mktemp("data"), loaded=True) as start:
        yield start()
