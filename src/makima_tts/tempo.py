"""Speaking faster or slower without changing the pitch, on a stream: FFmpeg's `atempo` filter through PyAV.

`atempo` is a WSOLA time-stretch (overlapping windows re-aligned by cross-correlation), the one FFmpeg
users apply to speech; one stage takes factors 0.5-2.0, so 0.25-4.0 (OpenAI's `speed` range) chain two.
As with any time-stretch, the extremes sound processed; 0.75-1.5 sound natural. It holds back about two
80 ms frames before its first output, and the end of a stream may differ from `N / speed` samples by up
to a few tens of milliseconds.

    stretch = TempoStretch(sample_rate, speed)
    stretch.process(samples [N] float32) -> [M] float32   (M about N / speed, possibly 0 at first)
    stretch.flush() -> [K] float32                          (the filter's tail; the stream is done)
"""

from __future__ import annotations

import av
import numpy as np
from av.filter import Graph

MIN_SPEED, MAX_SPEED = 0.25, 4.0


def tempo_stages(speed: float) -> list[float]:
    """Factors within atempo's 0.5-2.0 whose product is `speed`."""
    if not MIN_SPEED <= speed <= MAX_SPEED:
        raise ValueError(f"speed {speed:g} is outside {MIN_SPEED:g}-{MAX_SPEED:g}")
    stages = []
    while speed > 2.0:
        stages.append(2.0)
        speed /= 2.0
    while speed < 0.5:
        stages.append(0.5)
        speed /= 0.5
    return [*stages, speed]


class TempoStretch:
    def __init__(self, sample_rate: int, speed: float):
        self.sample_rate, self._pts = sample_rate, 0
        self._graph = graph = Graph()  # kept: its filters live inside it
        self._source = graph.add_abuffer(format="flt", sample_rate=sample_rate, layout="mono",
                                         time_base=f"1/{sample_rate}")
        chain = [self._source, *(graph.add("atempo", f"{factor:.6f}") for factor in tempo_stages(speed))]
        self._sink = graph.add("abuffersink")
        for upstream, downstream in zip(chain, [*chain[1:], self._sink], strict=True):
            upstream.link_to(downstream)
        graph.configure()

    def process(self, samples: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(samples, dtype=np.float32)
        if x.shape[0]:
            frame = av.AudioFrame.from_ndarray(x[None, :], format="flt", layout="mono")  # [1, N] packed
            frame.sample_rate, frame.pts = self.sample_rate, self._pts
            self._pts += x.shape[0]
            self._source.push(frame)
        return self._drain()

    def flush(self) -> np.ndarray:
        self._source.push(None)
        return self._drain()

    def _drain(self) -> np.ndarray:
        out = []
        while True:
            try:
                frame = self._sink.pull()
            except (BlockingIOError, EOFError):  # nothing more now / the stream has ended
                break
            out.append(frame.to_ndarray().reshape(-1))
        return np.concatenate(out) if out else np.zeros(0, np.float32)
