"""The streaming time-stretch: the duration scales by 1/speed, the pitch stays, output begins within the
first frames, and speeds outside OpenAI's range are refused."""

from __future__ import annotations

import math

import numpy as np
import pytest

from makima_tts.tempo import TempoStretch, tempo_stages

SR, FRAME = 24000, 1920


def tone(seconds: float, hz: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def peak_hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.shape[0])))
    return float(np.argmax(spectrum)) * SR / x.shape[0]


@pytest.mark.parametrize("speed", [0.25, 0.5, 0.8, 1.25, 2.0, 3.0, 4.0])
def test_duration_scales_and_pitch_stays(speed):
    x = tone(2.0)
    stretch = TempoStretch(SR, speed)
    parts = [stretch.process(x[i:i + FRAME]) for i in range(0, x.shape[0], FRAME)]
    y = np.concatenate([*parts, stretch.flush()])
    want = x.shape[0] / speed
    assert abs(y.shape[0] - want) <= 0.02 * want + 0.05 * SR, (y.shape[0], want)
    assert abs(peak_hz(y) - 220.0) < 2.0  # a resampler would move it to 220 * speed
    assert sum(p.shape[0] for p in parts[:4]) > 0  # streamed: output within the first four 80 ms frames
    assert np.isfinite(y).all() and np.abs(y).max() <= 0.31


def test_stages_stay_in_atempo_range():
    for speed in (0.25, 0.3, 0.5, 1.0, 1.7, 2.5, 4.0):
        stages = tempo_stages(speed)
        assert all(0.5 <= s <= 2.0 for s in stages) and math.isclose(math.prod(stages), speed)
    for speed in (0.2, 4.5):
        with pytest.raises(ValueError, match="outside 0.25-4"):
            tempo_stages(speed)
