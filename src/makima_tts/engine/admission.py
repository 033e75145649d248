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
prefilled); the engine asks it what to take and what to prefill next. `new_part` makes what a job
taken into a slot carries there: its prompt, frame budget, slot settings and generator.
"""

from __future__ import annotations

import math
import secrets
from collections import deque
from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING

import torch

from .budget import frame_budget
from .prompt import build_prompt
from .slots import SlotSettings
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

    def free_slots(self, settings: list) -> list[int]:
        """Slots neither generating (their `SlotPool.settings` entry is None) nor reserved here for a prefill."""
        reserved = self.reserved()
        return [slot for slot, s in enumerate(settings) if s is None and slot not in reserved]

    def take_count(self, free_slots: int) -> int:
        """How many queued jobs to take now, given the free slots."""
        if self.policy is AdmissionPolicy.ONE_PER_STEP:
            return min(1, free_slots)
        return free_slots

    def can_take(self, queue: deque[Job], settings: list, admissible: Callable[[Job], bool]) -> bool:
        """Whether `take` would admit a job now: a free slot, and a queued job that is `admissible`."""
        return bool(self.free_slots(settings)) and any(admissible(job) for job in queue)

    def take(self, queue: deque[Job], settings: list, admissible: Callable[[Job], bool]
             ) -> tuple[list[tuple[Job, int]], list[Job]]:
        """(under the engine's lock) Out of `queue`: the jobs to admit now, each with the free slot it gets
        (`take_count` of them, in arrival order, skipping those not `admissible` yet: an open text waits for
        its first tokens), and the jobs cancelled before admission. `settings`: `SlotPool.settings`."""
        dropped = [job for job in queue if job.cancelled]
        for job in dropped:
            queue.remove(job)
        free = self.free_slots(settings)
        count, taken = self.take_count(len(free)), []
        for job in list(queue):
            if len(taken) >= count:
                break
            if admissible(job):
                queue.remove(job)
                taken.append((job, free[len(taken)]))
        return taken, dropped

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


def new_part(job: Job, slot: int, tts, frames_cap: int, max_context: int) -> PrefillPart:
    """The job's prompt (its text so far, if streamed), frame budget and settings, bound for `slot`.
    Raises PromptError for a request the model cannot take."""
    req = job.request
    text = job.text.prompt_text() if job.text is not None else None
    prompt = build_prompt(req, tts.config, tts.tokenizer, tts.talker, tts.code_predictor, text)
    budget = frame_budget(req.max_frames, prompt, frames_cap, max_context)
    generator = torch.Generator(device=tts.device)
    generator.manual_seed(req.seed if req.seed is not None else secrets.randbits(63))
    settings = SlotSettings(req.sampling or tts.config.generation.sampling, generator, budget, req.stop_on_eos,
                            prompt.feed)
    if job.text is not None:  # later text extends the feed and the budget
        job.text.admitted(prompt, settings, lambda p=prompt: frame_budget(req.max_frames, p, frames_cap, max_context))
    return PrefillPart(slot, prompt, settings)
