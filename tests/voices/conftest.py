"""Voices fixtures: a built-in voices folder (one provisioned voice, one awaiting its clip), a clip, and real
S3-compatible servers (tests/s3_servers.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf


@pytest.fixture
def wav() -> np.ndarray:
    """2 s at 24 kHz: enough to be a reference clip."""
    return (0.3 * np.sin(np.arange(48000) / 10)).astype(np.float32)


@pytest.fixture
def builtin(tmp_path, wav):
    """`builtin/`: `narrator` (provisioned, English, transcript in a file, 16 kHz clip) and `pending`
    (no clip yet, a setup hint)."""
    root = tmp_path / "builtin"
    (root / "narrator").mkdir(parents=True)
    sf.write(root / "narrator" / "clip.wav", wav[::3], 8000)
    (root / "narrator" / "words.txt").write_text("Narrated words.\n", encoding="utf-8")
    (root / "narrator" / "voice.json").write_text(json.dumps(
        {"name": "Narrator", "language": "English", "audio": "clip.wav", "transcript": "words.txt"}))
    (root / "pending").mkdir()
    (root / "pending" / "voice.json").write_text(json.dumps(
        {"name": "Pending", "language": "japanese", "setup": "add builtin/pending/reference.wav, then restart"}))
    return root


@pytest.fixture
def s3_server(tmp_path, monkeypatch):
    """Factory: `s3_server("moto" | "rclone")` → a running real S3 server on loopback (stopped after the
    test); the standard AWS variables point at it."""
    from s3_servers import S3Server

    servers = []

    def start(kind: str) -> S3Server:
        server = S3Server(kind, tmp_path / f"{kind}-root").start()
        servers.append(server)
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
        return server

    yield start
    for server in servers:
        server.stop()
