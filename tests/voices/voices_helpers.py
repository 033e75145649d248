"""Stand-in models for the voices tests: they count (or hold up) prompt computations."""

from __future__ import annotations

import threading

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
