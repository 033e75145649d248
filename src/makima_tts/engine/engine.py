"""Engine: the models' hot loop, serving many utterances at once on two threads.

One job through the engine:

    caller             submit(request, sink) -> Job, or generate(request): its frames, then its Finished
    generation thread  (`makima-engine`, here) admits queued jobs into free slots of the `SlotPool`
                       (admission.py; prompt.py, budget.py, then `FrameStep.prefill_batch`) -> StartUtterance
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

Between two steps one packed prefill pass admits every waiting job that has a slot (admission.py: beside
running streams it is capped at about a step's work; a long prompt continues between the next steps).
While no admitted job has made its first frame yet, jobs that arrived during that pass get another pass
before the step, so a burst that trickles in over a prefill shares one first step.

First audio first: the codec decodes a step's first frames apart from the running rows and hands them
over first (codec_stage.py, `FirstFrames`). When a step carries first frames and every running stream
has more audio buffered on its client than a step lasts (`Job.lead`), the next step waits until that
frame is decoded and sent, so a newcomer's first frame does not share the cores with the next step; a
stream with less lead vetoes the wait. Cancellation is a flag checked between steps. Sinks must not block. On CUDA the codec thread
has its own stream; each hand-over carries an event, so neither side waits for the other's kernels. On
CPU each thread uses half the cores for its intra-op work (`threads` overrides).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator

import torch

from .admission import AdmissionPolicy, Admissions, default_chunk, new_part
from .codec_stage import (
    CodecStage,
    EndUtterance,
    FirstFrames,
    FrameCodes,
    FrameRow,
    StartUtterance,
    StepVerdict,
    Stop,
)
from .job import FirstAudio, Job, Sink, first_audio_waits
from .prefix_cache import PrefixCache
from .prompt import PromptError
from .slots import SlotPool
from .static_frames import StaticFrames
from .step import FrameStep
from .text_intake import TextPiece
from .timing import PhaseTimer
from .types import EngineEvent, Finished, SpeechRequest
from .warmup import warmup_request

log = logging.getLogger(__name__)


def default_threads(device: torch.device) -> int | None:
    if device.type != "cpu":
        return None
    return max(1, (os.cpu_count() or 2) // 2)


class Engine:
    def __init__(self, tts, max_streams: int = 8, max_context: int = 4096, max_frames_cap: int = 1500,
                 threads: int | None = None, static_frames: bool | None = None,
                 admission: AdmissionPolicy = AdmissionPolicy.BATCHED, prefill_chunk: int | None = None,
                 reuse_prefixes: bool = True, first_frames: FirstFrames = FirstFrames.APART,
                 on_first_audio: Callable[[FirstAudio], None] | None = None):
        """`static_frames`: run frames with static shapes (default: on CUDA, where they are graphs).
        `admission`, `prefill_chunk`: see admission.py (the chunk defaults by device). `reuse_prefixes`:
        keep each voice's shared prompt rows' keys/values (prefix_cache.py). `first_frames`: how the codec
        decodes newcomers' first frames beside running streams (codec_stage.py). `on_first_audio`: called
        (on the codec thread) with each job's `FirstAudio` phases as its first frame goes out."""
        self.tts = tts
        self.on_first_audio = on_first_audio
        self.max_frames_cap = max_frames_cap
        self.threads = threads or default_threads(tts.device)
        self.timer = PhaseTimer(tts.device)
        self._cuda = tts.device.type == "cuda"
        static = self._cuda if static_frames is None else static_frames
        self._pool = SlotPool(tts, max_streams, max_context, static=static)
        self._frames = FrameStep(tts, self._pool)
        self._static = StaticFrames(self._frames, cuda_graphs=self._cuda) if static else None
        self._codec = CodecStage(tts, max_streams, threads=self.threads, timer=self.timer, first_frames=first_frames)
        self._jobs: list[Job | None] = [None] * max_streams  # by slot
        self._queue: deque[Job] = deque()  # submitted, not yet admitted
        self._texts: deque[TextPiece] = deque()  # text for open jobs, not yet taken in
        self._admissions = Admissions(admission, prefill_chunk or default_chunk(tts.device.type))
        self.prefixes = PrefixCache(self._pool) if reuse_prefixes else None
        self._step_s = 0.0  # the last step's wall time (first audio first compares leads with it)
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
        """Short syntheses so that real requests pay no first-call costs: one alone, then one in every
        slot at once (on CPU oneDNN makes its kernels per shape on first use: after a lone warm-up, a
        fresh engine's first burst of 8 took 819-842 ms to first audio, after this one 593-657 ms;
        benchmarks/burst_bench.py). Run before serving: their audio is not reported to `on_first_audio`."""
        request, observer, self.on_first_audio = warmup_request(self.tts.config, frames), self.on_first_audio, None
        try:
            for _ in self.generate(request):
                pass
            jobs = [self.submit(request, lambda event: None) for _ in self._jobs]
            for job in jobs:
                job.done.wait()
        finally:
            self.on_first_audio = observer

    @property
    def uses_cuda_graphs(self) -> bool:
        """Whether frames run as captured CUDA graphs (known once the engine thread has started them)."""
        return self._static is not None and self._static.cuda_graphs

    @property
    def busy_streams(self) -> int:
        """Slots taken: streams generating plus utterances being prefilled."""
        return sum(j is not None for j in self._jobs) + len(self._admissions)

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
        """(under the lock) Whether a text piece, a queued job to drop or admit, a prefill, or a slot to step
        is there."""
        pool, queued = self._pool, self._queue
        return bool(self._texts) or bool(self._admissions) or any(job.cancelled for job in queued) or (
            self._admissions.can_take(queued, pool.settings, self._admissible)
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
            self._admit()
            while self._before_any_audio() and self._newcomers_waiting():
                self._admit()  # those that came during that prefill join the same first step
            if self._pool.active():
                try:
                    self._step()
                except Exception:
                    log.exception("engine step failed")
                    self._fail_all("internal error while generating audio")
        self._shutdown()

    def _admit(self) -> None:
        """Take in streamed text and the queued jobs that find a slot, drop cancelled ones, run a prefill pass."""
        with self._cv:
            texts, self._texts = self._texts, deque()
            for piece in texts:
                piece.job.text.take(piece)
            taken, dropped = self._admissions.take(self._queue, self._pool.settings, self._admissible)
        for job in dropped:  # posted outside the lock: the codec queue may be full
            self._end(job, Finished(0, cancelled=True))
        self._drop_cancelled()
        for job, slot in taken:
            self._reserve(job, slot)
        if self._admissions:
            self._prefill()

    def _before_any_audio(self) -> bool:
        """Whether every generating slot is still to make its first frame (so no stream's cadence is at
        stake when the next step waits for another prefill pass); batched admission only."""
        if self._admissions.policy is not AdmissionPolicy.BATCHED:
            return False
        settings = [self._pool.settings[slot] for slot in self._pool.active()]
        return bool(settings) and all(s.frames == 0 for s in settings)

    def _newcomers_waiting(self) -> bool:
        """(takes the lock) Whether a queued job could be admitted now, or a prompt is partly prefilled."""
        with self._cv:
            return bool(self._admissions) or self._admissions.can_take(self._queue, self._pool.settings,
                                                                       self._admissible)

    def _end(self, job: Job, event: Finished) -> None:
        """The job's Finished, delivered by the codec thread behind the frames already queued."""
        self._codec.put(EndUtterance(job, event))

    def _drop_cancelled(self) -> None:
        for slot, job in enumerate(self._jobs):
            if job is not None and job.cancelled:
                self._finish(slot, Finished(self._pool.settings[slot].frames, cancelled=True))
        for job, part in list(self._admissions.parts):
            if job.cancelled:
                self._admissions.remove(part)
                self._end(job, Finished(0, cancelled=True))

    def _reserve(self, job: Job, slot: int) -> None:
        """The job's prompt, budget and settings; it waits in `slot` for its prefill (or fails at once)."""
        job.taken_at = time.perf_counter()
        try:
            part = new_part(job, slot, self.tts, self.max_frames_cap, self._pool.max_context)
        except Exception as exc:
            if not isinstance(exc, PromptError):
                log.exception("preparing a prompt failed")
            message = str(exc) if isinstance(exc, PromptError) else "internal error while preparing the utterance"
            self._end(job, Finished(0, error=message))
            return
        if self.prefixes is not None:
            self.prefixes.seed(part)
        self._admissions.add(job, part)

    def _prefill(self) -> None:
        """One packed prefill pass; the jobs whose prompts it completes start generating."""
        plan = self._admissions.plan(streams_running=any(self._jobs))
        try:
            with self.timer("prefill"):
                tokens = self._frames.prefill_batch([(part, n) for _, part, n in plan], self.prefixes)
        except Exception:
            log.exception("prefill failed")
            for job, part, _ in plan:
                self._admissions.remove(part)
                if self._pool.settings[part.slot] is not None:
                    self._pool.release(part.slot)
                self._end(job, Finished(0, error="internal error while preparing the utterance"))
            return
        eos = self.tts.config.talker.codec_eos_token_id
        for job, part, _ in plan:
            if part.slot not in tokens:
                continue
            self._admissions.remove(part)
            self._jobs[part.slot] = job
            job.prefilled_at = time.perf_counter()
            self._codec.put(StartUtterance(part.slot, part.prompt.ref_codes, self._handoff()))
            if tokens[part.slot] == eos and job.request.stop_on_eos:
                self._finish(part.slot, Finished(0))

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
        started = time.perf_counter()
        rows = tuple(FrameRow(slot, self._jobs[slot], pool.settings[slot].frames, pool.settings[slot].text_read)
                     for slot in stepping)
        held = tuple(slot for slot in pool.active() if slot not in stepping)
        # first frames, and every running stream has more than a step's audio buffered on its client: once
        # this step's generation is done, wait for the frame's audio, so that the codec decodes it without
        # sharing the cores with the next step (first audio first); a stream with less lead vetoes it
        first_audio = threading.Event() if first_audio_waits(rows, started, self._step_s) else None
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
        self._step_s = time.perf_counter() - started
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
        waiting += [job for job, _ in self._admissions.parts]
        for job in waiting:
            self._end(job, Finished(0, cancelled=True))
        self._codec.put(Stop())
