"""metrics.py: the engine's first-audio phases on /metrics, one observation per utterance and phase."""

from __future__ import annotations

import re

import httpx

PHASES = ("queued", "prefill", "first_frame")


def phase_figures(http: str) -> dict[str, tuple[float, float]]:
    """phase -> (count, sum) of tts_engine_first_audio_phase_seconds."""
    text = httpx.get(f"{http}/metrics").text
    figures = {}
    for phase in PHASES:
        count = re.search(rf'^tts_engine_first_audio_phase_seconds_count{{phase="{phase}"}} (\S+)$', text, re.M)
        total = re.search(rf'^tts_engine_first_audio_phase_seconds_sum{{phase="{phase}"}} (\S+)$', text, re.M)
        figures[phase] = (float(count.group(1)), float(total.group(1))) if count and total else (0.0, 0.0)
    return figures


def test_each_utterance_adds_its_first_audio_phases(server):
    before = phase_figures(server.http)
    for _ in range(2):
        r = httpx.post(f"{server.http}/api/v1/speak", json={"text": "Where did the time go?"}, timeout=60)
        assert r.status_code == 200
    after = phase_figures(server.http)
    for phase in PHASES:
        assert after[phase][0] == before[phase][0] + 2, phase
        assert after[phase][1] >= before[phase][1], phase
    assert after["first_frame"][1] > before["first_frame"][1]  # a frame step and a decode take some time
