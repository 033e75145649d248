"""Admission: which queued utterances enter free slots at a step boundary, and how much of their prompts
is prefilled before the next frame.

    AdmissionPolicy.BATCHED       every queued job that finds a free slot is taken at once, and the rows
                                  of all their prompts go into one packed talker pass
                                  (`FrameStep.prefill_batch`). While streams are running, one pass takes
                                  at most `chunk` prompt rows (about one step's work, so running streams
                                  stall for about one step): the rest, such as a long ICL prompt,
                                  continues in the passes between the next steps, first come first served.
                                  With nothing running, the whole backlog goes in one pass.
    AdmissionPolicy.ONE_PER_STEP  the previous policy, kept for before/after benchmarks: one job per step
                                  boundary, its whole prompt in one pass.

`Admissions` holds the jobs between the queue and the frame step (slot reserved, prompt partly
prefilled); the engine asks it what to take and what to prefill next.
"""

from __future__ import annotations

import math
from enum import Enum
from typing import TYPE_CHECKING

from .step import PrefillPart

if TYPE_CHECKING:
    from .job import Job

DEFAULT_CHUNK = {"cpu": 64, "cuda": 512}  # prompt rows per pass beside running streams (about a step's cost)


class AdmissionPolicy(str, Enum):
    BATCHED = "batched"
    ONE_PER_STEP = "one_per_step"


def default_chunk(device_type: str) -> int:
    return DEFAULT_CHUNK.get(device_type, DEFAULT_CHUNK["cuda"])


class Admissions:
    def __init__(self, policy: AdmissionPolicy, chunk: int):
        if chunk < 1:
            raise ValueError(f"the prefill chunk must be at least 1 prompt row, not {chunk}")
        self.policy, self.chunk = AdmissionPolicy(policy), chunk
        self.parts: list[tuple[Job, PrefillPart]] = []  # in arrival order

    def __len__(self) -> int:
        return len(self.parts)

    def reserved(self) -> set[int]:
        return {part.slot for _, part in self.parts}

    def take_count(self, free_slots: int) -> int:
        """How many queued jobs to take now, given the free slots."""
        if self.policy is AdmissionPolicy.ONE_PER_STEP:
            return min(1, free_slots)
        return free_slots

    def add(self, job: Job, part: PrefillPart) -> None:
        self.parts.append((job, part))

    def remove(self, part: PrefillPart) -> None:
        self.parts = [(j, p) for j, p in self.parts if p is not part]

    def plan(self, streams_running: bool) -> list[tuple[Job, PrefillPart, int]]:
        """The next pass: (job, part, rows to prefill now), earliest arrivals first."""
        budget = self.chunk if streams_running and self.policy is AdmissionPolicy.BATCHED else math.inf
        chosen = []
        for job, part in self.parts:
            if budget <= 0:
                break
            n = int(min(part.remaining, budget))
            chosen.append((job, part, n))
            budget -= n
        return chosen
