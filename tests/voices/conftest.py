"""Voices fixtures: a built-in voices folder (one provisioned voice, one awaiting its clip), a clip, and
stand-in models that count (or hold up) prompt computations."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import soundfile as sf
import torch

from makima_tts.voice_prompt import VoicePrompt


class CountingModel:
    """Stands in for TTSModel where only prompts matter: counts prompt computations."""

    def __init__(self, fingerprint: str):
        self.fingerprint, self.calls = fingerprint, 0

    def create_voice_prompt(self, wav, sr, ref_text):
        self.calls += 1
        codes = torch.zeros(3, 16, dtype=torch.long) if ref_text else None
        return VoicePrompt(mode="icl" if ref_text else "xvector", x_vector=torch.ones(8), ref_codes=codes,
                           ref_text=ref_text)


class GatedModel(CountingModel):
    """A prompt computation that waits until the test lets it finish."""

    def __init__(self, fingerprint: str):
        super().__init__(fingerprint)
        self.entered, self.gate = threading.Event(), threading.Event()

    def create_voice_prompt(self, wav, sr, ref_text):
        self.entered.set()
        assert self.gate.wait(60)
        return super().create_voice_prompt(wav, sr, ref_text)


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
