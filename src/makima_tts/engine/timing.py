"""Per-phase wall-clock accounting of the engine loop (prefill, code predictor, codec, talker).

Off by default; `enable()` turns it on for benchmarks. On CUDA each phase is synchronised so the
figures are real (that costs a little, hence off in production).
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager

import torch


class PhaseTimer:
    def __init__(self, device: torch.device):
        self.enabled = False
        self.cuda = torch.device(device).type == "cuda"
        self.samples: dict[str, list[float]] = defaultdict(list)

    def enable(self, on: bool = True) -> None:
        self.enabled = on
        self.samples.clear()

    @contextmanager
    def __call__(self, phase: str):
        if not self.enabled:
            yield
            return
        if self.cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        yield
        if self.cuda:
            torch.cuda.synchronize()
        self.samples[phase].append(time.perf_counter() - start)
