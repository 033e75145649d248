"""Engine: one worker thread that owns the models' hot loop and serves many utterances at once.

`submit` queues a `SpeechRequest` and returns a `Job`; the worker admits queued jobs into free slots
(at most one prefill between two steps, so a newcomer never stalls the others for more than a step),
then advances every admitted job by one frame per step (lockstep batching, `FrameBatch`). Each
frame goes to the job's sink as soon as it exists; each job ends with exactly one `Finished`.
Cancellation is a flag checked between steps. Sinks run on the worker thread and must not block.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import threading
from collections import deque
from collections.abc import Callable

import torch

from .budget import frame_budget
from .prompt import PromptError, build_prompt
from .step import FrameBatch, SlotSettings
from .timing import PhaseTimer
from .types import AudioFrame, EngineEvent, Finished, SamplingParams, SpeechRequest

log = logging.getLogger(__name__)
Sink = Callable[[EngineEvent], None]


class Job:
    _ids = itertools.count(1)

    def __init__(self, engine: Engine, request: SpeechRequest, sink: Sink):
        self.id = next(self._ids)
        self.request, self._sink, self._engine = request, sink, engine
        self.cancelled = False
        self.done = threading.Event()

    def cancel(self) -> None:
        """Stop this job within one frame; its sink then gets Finished(cancelled=True)."""
        self.cancelled = True
        self._engine._wake()

    def emit(self, event: EngineEvent) -> None:
        if self.done.is_set():
            return
        if isinstance(event, Finished):
            self.done.set()
        try:
            self._sink(event)
        except Exception:  # a broken sink must never take the engine down
            log.exception("engine sink of job %s raised", self.id)


class Engine:
    def __init__(self, tts, max_streams: int = 8, max_context: int = 4096, max_frames_cap: int = 1500):
        self.tts = tts
        self.max_frames_cap = max_frames_cap
        self._batch = FrameBatch(tts, max_streams, max_context)
        self._jobs: list[Job | None] = [None] * max_streams
        self._queue: deque[Job] = deque()
        self._cv = threading.Condition()
        self._closed = False
        self.timer = PhaseTimer(tts.device)
        self._thread = threading.Thread(target=self._run, name="makima-engine", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ public, any thread
    def submit(self, request: SpeechRequest, sink: Sink) -> Job:
        job = Job(self, request, sink)
        with self._cv:
            if self._closed:
                job.emit(Finished(0, cancelled=True, error="the engine is shut down"))
                return job
            self._queue.append(job)
            self._cv.notify()
        return job

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join(timeout=30)

    def warmup(self, frames: int = 2) -> None:
        """One short synthesis so the first real request pays no first-call costs."""
        done = threading.Event()
        self.submit(self.tts.warmup_request(frames), lambda ev: done.set() if isinstance(ev, Finished) else None)
        done.wait()

    @property
    def busy_streams(self) -> int:
        return sum(j is not None for j in self._jobs)

    # ------------------------------------------------------------------ worker thread
    def _wake(self) -> None:
        with self._cv:
            self._cv.notify()

    def _run(self) -> None:
        torch.set_grad_enabled(False)
        while True:
            with self._cv:
                while not self._closed and not self._queue and not any(self._jobs):
                    self._cv.wait()
                if self._closed:
                    break
                pending = self._take_pending()
            self._drop_cancelled()
            if pending is not None:
                self._admit(pending)
            if any(self._jobs):
                try:
                    self._step()
                except Exception:
                    log.exception("engine step failed")
                    self._fail_all("internal error while generating audio")
        self._shutdown()

    def _take_pending(self) -> Job | None:
        while self._queue:
            job = self._queue[0]
            if job.cancelled:
                self._queue.popleft().emit(Finished(0, cancelled=True))
                continue
            if self._batch.free_slot() is None:
                return None
            return self._queue.popleft()
        return None

    def _drop_cancelled(self) -> None:
        for slot, job in enumerate(self._jobs):
            if job is not None and job.cancelled:
                self._finish(slot, Finished(self._batch.settings[slot].frames, cancelled=True))

    def _admit(self, job: Job) -> None:
        slot = self._batch.free_slot()
        req = job.request
        try:
            prompt = build_prompt(req, self.tts.config, self.tts.tokenizer, self.tts.talker, self.tts.code_predictor)
            budget = frame_budget(req.max_frames, prompt, self.max_frames_cap, self._batch.max_context)
            generator = torch.Generator(device=self.tts.device)
            generator.manual_seed(req.seed if req.seed is not None else secrets.randbits(63))
            sampling = req.sampling or SamplingParams.from_defaults(self.tts.config.generation)
            settings = SlotSettings(sampling, generator, budget, req.stop_on_eos, prompt.trailing, prompt.pad)
            self._jobs[slot] = job
            with self.timer("prefill"):
                token = self._batch.prefill(slot, prompt, settings)
        except PromptError as exc:
            self._jobs[slot] = None
            self._batch.release(slot)
            job.emit(Finished(0, error=str(exc)))
            return
        except Exception:
            log.exception("prefill failed")
            self._jobs[slot] = None
            self._batch.release(slot)
            job.emit(Finished(0, error="internal error while preparing the utterance"))
            return
        if token == self.tts.config.talker.codec_eos_token_id and req.stop_on_eos:
            self._finish(slot, Finished(0))

    def _step(self) -> None:
        batch, timer = self._batch, self.timer
        with timer("code_predictor"):
            frame = batch.predict_frame()
        with timer("codec"):
            audio = batch.decode_audio(frame).cpu().numpy()
        codes = frame.cpu().numpy()
        for slot, job in enumerate(self._jobs):
            if job is not None:
                job.emit(AudioFrame(batch.settings[slot].frames, codes[slot], audio[slot]))
        with timer("talker"):
            next_token = batch.advance(frame).cpu().numpy()
        eos = self.tts.config.talker.codec_eos_token_id
        for slot, job in enumerate(self._jobs):
            if job is None:
                continue
            settings = batch.settings[slot]
            if settings.stop_on_eos and int(next_token[slot]) == eos:
                self._finish(slot, Finished(settings.frames))
            elif settings.frames >= settings.budget:
                self._finish(slot, Finished(settings.frames, truncated=True))

    def _finish(self, slot: int, event: Finished) -> None:
        job = self._jobs[slot]
        self._jobs[slot] = None
        self._batch.release(slot)
        job.emit(event)

    def _fail_all(self, message: str) -> None:
        for slot, job in enumerate(self._jobs):
            if job is not None:
                self._finish(slot, Finished(self._batch.settings[slot].frames, error=message))

    def _shutdown(self) -> None:
        for slot, job in enumerate(self._jobs):
            if job is not None:
                self._finish(slot, Finished(self._batch.settings[slot].frames, cancelled=True))
        with self._cv:
            while self._queue:
                self._queue.popleft().emit(Finished(0, cancelled=True))
