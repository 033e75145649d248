"""Engine: the models' hot loop on two threads, serving many utterances at once.

`submit` queues a `SpeechRequest` and returns a `Job`. The generation thread admits queued jobs into
free slots (at most one prefill between two steps, so a newcomer never stalls the others for more than
a step) and advances every admitted job by one frame per step (lockstep batching, `FrameBatch`). Each
step's codes go, in order, through a short queue to the codec thread (`CodecStage`), which turns them
into audio and delivers the frames; the talker computes the next step meanwhile. Every event a job's
sink receives is delivered by the codec thread, so frames and the job's single `Finished` stay in
order. Cancellation is a flag checked between steps. Sinks must not block.

Frames run eagerly on CPU (the codes go to the codec between the code predictor and the talker) and as
static-shape frames on CUDA, captured as CUDA graphs when the engine starts (`static_frames.py`). On
CUDA the codec thread has its own stream; each hand-over carries an event, so neither side waits for the
other's kernels.

Threads: on CPU each of the two threads uses half the cores for its intra-op work (`threads` overrides).
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import secrets
import threading
from collections import deque
from collections.abc import Callable

import torch

from .budget import frame_budget
from .codec_stage import CodecStage
from .prompt import PromptError, build_prompt
from .static_frames import StaticFrames
from .step import FrameBatch, SlotSettings
from .timing import PhaseTimer
from .types import AudioFrame, EngineEvent, Finished, SamplingParams, SpeechRequest

log = logging.getLogger(__name__)
Sink = Callable[[EngineEvent], None]
CODEC_QUEUE_STEPS = 2  # how far generation may run ahead of the codec


class Job:
    _ids = itertools.count(1)

    def __init__(self, engine: Engine, request: SpeechRequest, sink: Sink):
        self.id = next(self._ids)
        self.request, self._sink, self._engine = request, sink, engine
        self.cancelled = False
        self.done = threading.Event()

    def cancel(self) -> None:
        """Stop this job within a step; its sink then gets Finished(cancelled=True)."""
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
        self._batch = FrameBatch(tts, max_streams, max_context, static=static)
        self._static = StaticFrames(self._batch, cuda_graphs=self._cuda) if static else None
        self._codec = CodecStage(tts, max_streams)
        self._jobs: list[Job | None] = [None] * max_streams
        self._queue: deque[Job] = deque()
        self._cv = threading.Condition()
        self._closed = False
        self._codec_queue: queue.Queue = queue.Queue(maxsize=CODEC_QUEUE_STEPS)
        self._codec_thread = threading.Thread(target=self._run_codec, name="makima-codec", daemon=True)
        self._thread = threading.Thread(target=self._run, name="makima-engine", daemon=True)
        self._codec_thread.start()
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
        self._codec_thread.join(timeout=30)

    def warmup(self, frames: int = 2) -> None:
        """One short synthesis so the first real request pays no first-call costs."""
        done = threading.Event()
        self.submit(self.tts.warmup_request(frames), lambda ev: done.set() if isinstance(ev, Finished) else None)
        done.wait()

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
                while not self._closed and not self._queue and not any(self._jobs):
                    self._cv.wait()
                if self._closed:
                    break
                pending, dropped = self._take_pending()
            for job in dropped:  # posted outside the lock: the codec queue may be full
                self._post(job, Finished(0, cancelled=True))
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

    def _post(self, job: Job, event: EngineEvent) -> None:
        """Deliver an event through the codec thread, behind the frames already queued."""
        self._codec_queue.put(("emit", job, event))

    def _take_pending(self) -> tuple[Job | None, list[Job]]:
        """The next queued job if a slot is free, and the queued jobs cancelled before admission."""
        dropped = []
        while self._queue:
            if self._queue[0].cancelled:
                dropped.append(self._queue.popleft())
            elif self._batch.free_slot() is None:
                break
            else:
                return self._queue.popleft(), dropped
        return None, dropped

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
        except Exception as exc:
            if not isinstance(exc, PromptError):
                log.exception("prefill failed")
            self._jobs[slot] = None
            self._batch.release(slot)
            message = str(exc) if isinstance(exc, PromptError) else "internal error while preparing the utterance"
            self._post(job, Finished(0, error=message))
            return
        self._codec_queue.put(("start", slot, prompt.ref_codes, self._handoff()))
        if token == self.tts.config.talker.codec_eos_token_id and req.stop_on_eos:
            self._finish(slot, Finished(0))

    def _handoff(self) -> torch.cuda.Event | None:
        """On CUDA, an event marking the work queued so far on this thread's stream."""
        if not self._cuda:
            return None
        event = torch.cuda.Event()
        event.record()
        return event

    def _step(self) -> None:
        batch = self._batch
        rows = [(slot, job, batch.settings[slot].frames) for slot, job in enumerate(self._jobs) if job is not None]
        # only first frames (nothing else running): once this step's generation is done, wait for their
        # audio, so that the codec decodes it without sharing the cores with the next step (time to first
        # audio first); beside running streams, no wait (they would stall)
        first_audio = threading.Event() if all(index == 0 for _, _, index in rows) else None
        if self._static is not None:
            with self.timer("frame"):
                frame, next_token = self._static.run()
            self._codec_queue.put(("frame", frame, rows, self._handoff(), first_audio))
        else:
            with self.timer("code_predictor"):
                frame = batch.predict_frame()
            self._codec_queue.put(("frame", frame, rows, self._handoff(), first_audio))
            with self.timer("talker"):
                next_token = batch.advance(frame)
        next_token = next_token.cpu().numpy()
        if first_audio is not None:
            first_audio.wait()
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
        self._post(job, event)

    def _fail_all(self, message: str) -> None:
        for slot, job in enumerate(self._jobs):
            if job is not None:
                self._finish(slot, Finished(self._batch.settings[slot].frames, error=message))

    def _shutdown(self) -> None:
        for slot, job in enumerate(self._jobs):
            if job is not None:
                self._finish(slot, Finished(self._batch.settings[slot].frames, cancelled=True))
        with self._cv:
            waiting, self._queue = list(self._queue), deque()
        for job in waiting:
            self._post(job, Finished(0, cancelled=True))
        self._codec_queue.put(None)

    # ------------------------------------------------------------------ codec thread
    def _run_codec(self) -> None:
        torch.set_grad_enabled(False)
        if self.threads:
            torch.set_num_threads(self.threads)
        if self._cuda:
            torch.cuda.set_stream(torch.cuda.Stream(self.tts.device))
        while (item := self._codec_queue.get()) is not None:
            kind = item[0]
            try:
                if kind == "emit":
                    item[1].emit(item[2])
                elif kind == "start":
                    self._receive(item[3], item[2])
                    self._codec.start(item[1], item[2])
                else:
                    self._receive(item[3], item[1])
                    self._deliver(item[1], item[2])
            except Exception:
                log.exception("codec stage failed")
                for _, job, _ in item[2] if kind == "frame" else []:
                    job.emit(Finished(0, error="internal error while decoding audio"))
                    job.cancel()
            finally:
                if kind == "frame" and item[4] is not None:
                    item[4].set()

    @staticmethod
    def _receive(ready: torch.cuda.Event | None, tensor: torch.Tensor | None) -> None:
        """Codec thread, CUDA: wait (on the device) for the generation work behind a hand-over, and tell
        the allocator the tensor is now used on this stream too."""
        if ready is None:
            return
        stream = torch.cuda.current_stream()
        stream.wait_event(ready)
        if tensor is not None:
            tensor.record_stream(stream)

    def _deliver(self, frame: torch.Tensor, rows: list[tuple[int, Job, int]]) -> None:
        with self.timer("codec"):
            audio, rejected = self._codec.decode(frame)
        codes = frame.cpu().numpy()
        for slot, job, index in rows:
            if slot in rejected:  # this utterance alone fails; the batch's other rows decoded as usual
                log.error("codec rejected frame %d of job %s in slot %d: codes %s outside [0, %d)", index, job.id,
                          slot, codes[slot].tolist(), self._codec.codebook_size)
                job.emit(Finished(index, error="internal error while decoding audio"))
                job.cancel()
            else:
                job.emit(AudioFrame(index, codes[slot], audio[slot]))
