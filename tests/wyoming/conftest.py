"""Wyoming test fixtures: a real makima-tts server (tests/server/server_helpers.py, tiny checkpoint) and
a real `makima-tts wyoming` process bridging to it on a loopback port."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))

from server_helpers import server_factory  # noqa: E402
from wyoming_helpers import WyomingProcess  # noqa: E402


@pytest.fixture(scope="module")
def tts_server(tiny_base_dir, tmp_path_factory):
    with server_factory(tiny_base_dir, tmp_path_factory.mktemp("data"), loaded=True) as start:
        yield start(max_frames=12)


@pytest.fixture(scope="module")
def wyoming(tts_server):
    """`makima-tts wyoming --url <tts_server>` (module-wide)."""
    proc = WyomingProcess("--url", tts_server.http)
    yield proc
    proc.stop()


@pytest.fixture
def start_bridge(tiny_base_dir, tmp_path):
    """Factory: `start_bridge(**settings)` → (its ServerThread, a `makima-tts wyoming` process for it)."""
    bridges: list[WyomingProcess] = []

    with server_factory(tiny_base_dir, tmp_path / "data", loaded=True) as start_server:
        def start(**overrides):
            srv = start_server(**overrides)
            bridges.append(WyomingProcess("--url", srv.http))
            return srv, bridges[-1]

        yield start
        for proc in bridges:
            proc.stop()
