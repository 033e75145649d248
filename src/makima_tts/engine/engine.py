"""Engine: the models' hot loop, serving many utterances at once on two threads.

One job through the engine:

    caller             submit(request, sink) -> Job, or generate(request): its frames, then its Finished
    generation thread  (`makima-engine`, here) admits queued jobs into free slots of the `SlotPool`
                       (prompt.py, budget.py, then `FrameStep.prefill`) -> StartUtterance
                       and advances every admitted job by one frame per step (lockstep batching):
                       `FrameStep.predict_frame` -> FrameCodes -> `FrameStep.advance` (static frames on
                       CUDA: `StaticFrames.run`); end token, budget or cancel frees the slot -> EndUtterance
    codec thread       (`makima-codec`, codec_stage.py) resets codec rows, decodes each FrameCodes and
                       calls the jobs' sinks: AudioFrame per row, then the job's Finished

Streamed text (`SpeechRequest.text_open`, then `Job.append_text`; text_intake.py): a slot whose next
text row has not arrived sits out the steps untouched (`SlotPool.stage_participation`) until it comes.

Hand-offs: `submit` appends to a deque the generation thread waits on (a condition); the generation
thread sends typed messages to the codec thread through one bounded FIFO queue
(`codec_stage.QUEUE_STEPS` deep), so the talker makes frame k+1 while the codec decodes frame k. Every
event a sink receives is delivered by the codec thread in that queue's order (a job's frames, then
exactly one Finished, never anything after); only a submit to a closed engine is answered at once.

At most one prefill runs between two steps, so a newcomer never stalls the others for more than a step.
Cancellation is a flag checked between steps. Sinks must not block. On CUDA the codec thread has its
own stream; each hand-over carries an event, so neither side waits for the other's kernels. On CPU each
thread uses half the cores for its intra-op work (`threads` overrides).
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import secrets
import threading
from collections import deque
from collections.abc import Callable, Iterator

import torch

from .budget import frame_budget
from .codec_stage import CodecStage, EndUtterance, FrameCodes, FrameRow, StartUtterance, StepVerdict, Stop
from .prompt import PromptError, build_prompt
from .slots import SlotPool, SlotSettings
from .static_frames import StaticFrames
from .step import FrameStep
from .text_intake import OpenText, TextPiece
from .timing import PhaseTimer
from .types import EngineEvent, Finished, SpeechRequest
from .warmup import warmup_request

log = logging.getLogger(__name__)
Sink = Callable[[EngineEvent], None]


class Job:
    _ids = itertools.count(1)

    def __init__(self, engine: Engine, request: SpeechRequest, sink: Sink):
        self.id = next(self._ids)
        self.request, self._sink, self._engine = request, sink, engine
        self.cancelled = False
        self.done = threading.Event()
        self.text = OpenText(engine.tts, request) if request.text_open else None  # generation thread only

    def append_text(self, text: str, close: bool = False) -> None:
        """More text for a job submitted with `text_open`; `close` ends its text (any thread)."""
        if self.text is None:
            raise ValueError("this job's text was given whole (submit it with text_open=True to stream text)")
        self._engine._post_text(TextPiece(self, text, close))

    def cancel(self) -> None:
        """Stop this job within a step; its sink then gets Finished(cancelled=True)."""
        self.cancelled = True
        self._engine._wake()

    def emit(self, event: EngineEvent) -> None:
        """Hand an event to the sink (codec thread); nothing passes once the Finished has."""
        if self.done.is_set():
            return
        if isinstance(event, Finished):
            self.done.set()
        try:
            self._sink(event)
        except Exception:  # a broken sink must never take the engine down
            log.exception("engine sink of job %s raised", self.id)


def default_threads(device: torch.device) -> int | None:
    if device.type != "cpu":
        return None
    return max(1, (os.cpu_count() or 2) // 2)


class Engine:
    def __init__(self, tts, max_streams: int = 8, max_context: int = 4096, max_frames_cap: int = 1500,
                 threads: int | None = None, static_frames: bool | None = None):
        """`static_frames`: run frames with static shapes (default: on CUDA, where they are graphs)."""
        self.tts = tts
        self.max_frames_cap = max_frames_cap
        self.threads = threads or default_threads(tts.device)
        self.timer = PhaseTimer(tts.device)
        self._cuda = tts.device.type == "cuda"
        static = self._cuda if static_frames is None else static_frames
        self._pool = SlotPool(tts, max_streams, max_context, static=static)
        self._frames = FrameStep(tts, self._pool)
        self._static = StaticFrames(self._frames, cuda_graphs=self._cuda) if static else None
        self._codec = CodecStage(tts, max_streams, threads=self.threads, timer=self.timer)
        self._jobs: list[Job | None] = [None] * max_streams  # by slot
        self._queue: deque[Job] = deque()  # submitted, not yet admitted
        self._texts: deque[TextPiece] = deque()  # text for open jobs, not yet taken in
        self._cv = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="makima-engine", daemon=True)
        self._codec.launch()
        self._thread.start()

    # ------------------------------------------------------------------ public, any thread
    def submit(self, request: SpeechRequest, sink: Sink) -> Job:
        """Queue an utterance; `sink` gets its AudioFrames, then one Finished (on the codec thread)."""
        job = Job(self, request, sink)
        with self._cv:
            if self._closed:
                job.emit(Finished(0, cancelled=True, error="the engine is shut down"))
                return job
            self._queue.append(job)
            if job.text is not None:
                self._texts.append(TextPiece(job, request.text, close=False))
            self._cv.notify()
        return job

    def generate(self, request: SpeechRequest, timeout: float | None = None) -> Iterator[EngineEvent]:
        """The utterance's AudioFrames as they are made, then its Finished. Leaving the loop early (break,
        an exception, closing the iterator) cancels the job. `timeout`: seconds to wait for each event
        (TimeoutError past it; the job is cancelled)."""
        events: queue.SimpleQueue[EngineEvent] = queue.SimpleQueue()
        job = self.submit(request, events.put)
        try:
            while True:
                try:
                    event = events.get(timeout=timeout)
                except queue.Empty:
                    raise TimeoutError(f"no engine event for job {job.id} within {timeout} s") from None
                yield event
                if isinstance(event, Finished):
                    return
        finally:
            if not job.done.is_set():
                job.cancel()

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join(timeout=30)
        self._codec.join(timeout=30)

    def warmup(self, frames: int = 2) -> None:
        """One short synthesis so the first real request pays no first-call costs."""
        for _ in self.generate(warmup_request(self.tts.config, frames)):
            pass

    @property
    def uses_cuda_graphs(self) -> bool:
        """Whether frames run as captured CUDA graphs (known once the engine thread has started them)."""
        return self._static is not None and self._static.cuda_graphs

    @property
    def busy_streams(self) -> int:
        return sum(j is not None for j in self._jobs)

    # ------------------------------------------------------------------ generation thread
    def _wake(self) -> None:
        with self._cv:
            self._cv.notify()

    def _post_text(self, piece: TextPiece) -> None:
        with self._cv:
            if not self._closed:
                self._texts.append(piece)
                self._cv.notify()

    def _has_work(self) -> bool:
        """(under the lock) Whether a text piece, a queued job to drop or admit, or a slot to step is there."""
        pool, queued = self._pool, self._queue
        return bool(self._texts) or any(job.cancelled for job in queued) or (
            pool.free_slot() is not None and any(self._admissible(job) for job in queued)
        ) or any(job is not None and (job.cancelled or pool.settings[slot].feed.ready(pool.settings[slot].frames))
                 for slot, job in enumerate(self._jobs))

    def _admissible(self, job: Job) -> bool:
        return job.text is None or job.text.prefill_ready()

    def _run(self) -> None:
        torch.set_grad_enabled(False)
        if self.threads:
            torch.set_num_threads(self.threads)
        if self._static is not None:
            try:
                self._static.capture_all()
            except Exception:
                log.exception("CUDA graph capture failed; frames run eagerly")
                self._static = None
        while True:
            with self._cv:
                while not self._closed and not self._has_work():
                    self._cv.wait()
                if self._closed:
                    break
                texts, self._texts = self._texts, deque()
                for piece in texts:
                    piece.job.text.take(piece)
                pending, dropped = self._take_pending()
            for job in dropped:  # posted outside the lock: the codec queue may be full
                self._end(job, Finished(0, cancelled=True))
            self._drop_cancelled()
            if pending is not None:
                self._admit(pending)
            if self._pool.active():
                try:
                    self._step()
                except Exception:
                    log.exception("engine step failed")
                    self._fail_all("internal error while generating audio")
        self._shutdown()

    def _end(self, job: Job, event: Finished) -> None:
        """The job's Finished, delivered by the codec thread behind the frames already queued."""
        self._codec.put(EndUtterance(job, event))

    def _take_pending(self) -> tuple[Job | None, list[Job]]:
        """The first admissible queued job if a slot is free (an open text waits for its first tokens),
        and the queued jobs cancelled before admission."""
        dropped = [job for job in self._queue if job.cancelled]
        for job in dropped:
            self._queue.remove(job)
        if self._pool.free_slot() is not None:
            for job in self._queue:
                if self._admissible(job):
                    self._queue.remove(job)
                    return job, dropped
        return None, dropped

    def _drop_cancelled(self) -> None:
        for slot, job in enumerate(self._jobs):
            if job is not None and job.cancelled:
                self._finish(slot, Finished(self._pool.settings[slot].frames, cancelled=True))

    def _admit(self, job: Job) -> None:
        slot = self._pool.free_slot()
        req, tts = job.request, self.tts
        try:
            text = job.text.prompt_text() if job.text is not None else None
            prompt = build_prompt(req, tts.config, tts.tokenizer, tts.talker, tts.code_predictor, text)
            budget = frame_budget(req.max_frames, prompt, self.max_frames_cap, self._pool.max_context)
            generator = torch.Generator(device=tts.device)
            generator.manual_seed(req.seed if req.seed is not None else secrets.randbits(63))
            sampling = req.sampling or tts.config.generation.sampling
            settings = SlotSettings(sampling, generator, budget, req.stop_on_eos, prompt.feed)
            if job.text is not None:  # later text extends the feed and the budget
                job.text.admitted(prompt, settings, lambda p=prompt: frame_budget(
                    req.max_frames, p, self.max_frames_cap, self._pool.max_context))
            self._jobs[slot] = job
            with self.timer("prefill"):
                token = self._frames.prefill(slot, prompt, settings)
        except Exception as exc:
            if not isinstance(exc, PromptError):
                log.exception("prefill failed")
            self._jobs[slot] = None
            self._pool.release(slot)
            message = str(exc) if isinstance(exc, PromptError) else "internal error while preparing the utterance"
            self._end(job, Finished(0, error=message))
            return
        self._codec.put(StartUtterance(slot, prompt.ref_codes, self._handoff()))
        if token == tts.config.talker.codec_eos_token_id and req.stop_on_eos:
            self._finish(slot, Finished(0))

    def _handoff(self) -> torch.cuda.Event | None:
        """On CUDA, an event marking the work queued so far on this thread's stream."""
        if not self._cuda:
            return None
        event = torch.cuda.Event()
        event.record()
        return event

    def _step(self) -> None:
        """One frame for every admitted job; then end the jobs that chose the end token or ran out of budget."""
        pool, step = self._pool, self._frames
        stepping = pool.stage_participation()  # slots waiting for text sit this frame out
        if not stepping:
            return
        rows = tuple(FrameRow(slot, self._jobs[slot], pool.settings[slot].frames) for slot in stepping)
        held = tuple(slot for slot in pool.active() if slot not in stepping)
        # only first frames (nothing else running): once this step's generation is done, wait for their
        # audio, so that the codec decodes it without sharing the cores with the next step (time to first
        # audio first); beside running streams, no wait (they would stall)
        first_audio = threading.Event() if all(row.index == 0 for row in rows) else None
        verdict = StepVerdict()  # settled below, whatever happens: the codec thread waits for it
        ending: dict[int, Finished] = {}
        try:
            if self._static is not None:
                with self.timer("frame"):
                    frame, next_token = self._static.run()
                self._codec.put(FrameCodes(frame, rows, verdict, self._handoff(), first_audio, held))
            else:
                with self.timer("code_predictor"):
                    frame = step.predict_frame()  # [n, 16]
                self._codec.put(FrameCodes(frame, rows, verdict, self._handoff(), first_audio, held))
                with self.timer("talker"):
                    next_token = step.advance(frame)  # [n]
            next_token = next_token.cpu().numpy()
            eos = self.tts.config.talker.codec_eos_token_id
            for slot in stepping:
                settings = pool.settings[slot]
                if settings.stop_on_eos and int(next_token[slot]) == eos:
                    ending[slot] = Finished(settings.frames)
                elif settings.frames >= settings.budget:
                    ending[slot] = Finished(settings.frames, truncated=True)
        finally:
            verdict.settle(ending)  # these rows' frames are their jobs' last
        if first_audio is not None:
            first_audio.wait()
        for slot, event in ending.items():
            self._finish(slot, event)

    def _finish(self, slot: int, event: Finished) -> None:
        job = self._jobs[slot]
        self._jobs[slot] = None
        self._pool.release(slot)
        self._end(job, event)

    def _fail_all(self, message: str) -> None:
        for slot, job in enumerate(self._jobs):
            if job is not None:
                self._finish(slot, Finished(self._pool.settings[slot].frames, error=message))

    def _shutdown(self) -> None:
        for slot, job in enumerate(self._jobs):
            if job is not None:
                self._finish(slot, Finished(self._pool.settings[slot].frames, cancelled=True))
        with self._cv:
            waiting, self._queue = list(self._queue), deque()
        for job in waiting:
            self._end(job, Finished(0, cancelled=True))
        self._codec.put(Stop())
