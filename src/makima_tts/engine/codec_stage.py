"""The codec stage: the codec thread, the typed messages it receives, one streaming codec row per slot.

The generation thread hands over work in one bounded FIFO queue; the codec thread (`makima-codec`)
takes the messages in order and is the only thread that calls the jobs' sinks:

    StartUtterance(slot, ref_codes, ready)   reset the slot's codec row (ICL: to the primed state)
    FrameCodes(frame, rows, verdict, ...)    decode frame [n, 16] -> audio [n, 1920]; one AudioFrame per row,
                                             `last` on the rows whose job ends with it (`StepVerdict`);
                                             the `held` rows (waiting for text) keep their codec state;
                                             new utterances' first frames are handed over first (with
                                             `FirstFrames.APART`, decoded on their own before the rest)
    EndUtterance(job, finished)              the job's single Finished, behind every frame queued before it
    Stop()                                   end of the thread (the last message)

Because a job's `EndUtterance` is queued after its last `FrameCodes` in the same queue, a sink sees its
frames, then exactly one `Finished`, and nothing after (`Job.emit` drops anything once finished). While
the talker and code predictor make frame k+1 (memory-bound), this thread decodes frame k
(compute-bound). On CUDA it has its own stream; `ready` is an event recorded by the generation thread
after the work the message depends on, waited for on the device (no host sync).

`FirstFrames` says how a frame that carries new utterances' first frames beside running streams is
decoded: APART (the default) decodes the first-frame rows on their own and hands them over, then the
other rows; TOGETHER decodes every row in one call (the engine before). A decode's time grows with its
rows (on the 2-core CPU, about 20 ms plus 20 ms per row for the full codec), so apart a newcomer's audio
waits for a decode of its own rows only; the running rows pay one more call's fixed cost, once per
newcomer. Apart or together, every row's state advances the same way (rows are independent; the
samples may differ within float noise, as between batch sizes).

With `static` (default on CUDA) each decode goes through `StaticCodec` (static_codec.py): a fixed bucket of
rows, a CUDA graph per bucket. Also here: `PrimedStates`, the codec states right after an ICL reference (computed once per distinct
reference, LRU), used only from the codec thread.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch

from .static_codec import StaticCodec
from .timing import PhaseTimer
from .types import AudioFrame, Finished

if TYPE_CHECKING:
    from .job import Job

log = logging.getLogger(__name__)
QUEUE_STEPS = 2  # how many messages the generation thread may run ahead of the codec
PRIMED_CACHE = 16  # distinct ICL references whose primed codec state is kept
DECODE_ERROR = "internal error while decoding audio"


class FirstFrames(str, Enum):
    APART = "apart"
    TOGETHER = "together"


# ---------------------------------------------------------------------------------------- messages
class FrameRow(NamedTuple):
    slot: int  # row of the frame
    job: Job
    index: int  # frame number within the job's utterance
    text_read: int = 0  # the utterance's text tokens taken in when it was made (TextFeed.read_by)


@dataclass(frozen=True)
class StartUtterance:
    slot: int
    ref_codes: torch.Tensor | None  # [T_ref, 16] (ICL) or None (start from silence)
    ready: torch.cuda.Event | None = None  # CUDA: the generation work before this hand-over


class StepVerdict:
    """Which rows of a frame end their job (end token chosen or budget reached): settled by the generation
    thread once it has chosen the next tokens, waited for by the codec thread before it delivers the frame
    (the talker step usually finishes before the codec's decode, so this rarely waits)."""

    def __init__(self) -> None:
        self._settled = threading.Event()
        self._last: frozenset[int] = frozenset()

    def settle(self, last_slots) -> None:
        self._last = frozenset(last_slots)
        self._settled.set()

    def last_slots(self) -> frozenset[int]:
        self._settled.wait()
        return self._last


@dataclass(frozen=True)
class FrameCodes:
    frame: torch.Tensor  # [n, 16] int64, rows 0..n-1 of the slots (free rows all 0)
    rows: tuple[FrameRow, ...]  # the rows that made a frame, each with its job and frame index
    verdict: StepVerdict
    ready: torch.cuda.Event | None = None
    decoded: threading.Event | None = None  # set once the frame is delivered (time to first audio)
    held: tuple[int, ...] = ()  # occupied slots that made no frame (waiting for text): state kept as is


@dataclass(frozen=True)
class EndUtterance:
    job: Job
    finished: Finished


@dataclass(frozen=True)
class Stop:
    pass


CodecMessage = StartUtterance | FrameCodes | EndUtterance | Stop


# ---------------------------------------------------------------------------------------- state
class PrimedStates:
    """LRU of one-row codec states right after an ICL reference, keyed by the reference codes."""

    def __init__(self, codec, size: int = PRIMED_CACHE):
        self.codec, self.size = codec, size
        self._states: OrderedDict[tuple, object] = OrderedDict()

    def get(self, ref_codes: torch.Tensor, device: torch.device):
        codes = ref_codes.cpu()
        key = (tuple(codes.shape), codes.numpy().tobytes())
        if key in self._states:
            self._states.move_to_end(key)
            return self._states[key]
        with torch.inference_mode():
            state = self.codec.prime(ref_codes.to(device))
        self._states[key] = state
        while len(self._states) > self.size:
            self._states.popitem(last=False)
        return state


class CodecStage:
    def __init__(self, tts, slots: int, threads: int | None = None, timer: PhaseTimer | None = None,
                 static: bool | None = None, first_frames: FirstFrames = FirstFrames.APART):
        """`static`: decode through `StaticCodec` (default: on CUDA, where its buckets are CUDA graphs).
        `first_frames`: how new utterances' first frames are decoded beside running streams (above)."""
        self.tts = tts
        self.first_frames = FirstFrames(first_frames)
        self.threads = threads
        self.timer = timer or PhaseTimer(tts.device)
        self.state = tts.codec.new_state(slots, device=tts.device, dtype=tts.dtype)
        self.codebook_size = tts.config.codec.decoder.codebook_size
        self.primed = PrimedStates(tts.codec)
        cuda = tts.device.type == "cuda"
        self.static = StaticCodec(tts.codec, self.state, cuda_graphs=cuda) if (cuda if static is None else static) else None
        self._queue: queue.Queue[CodecMessage] = queue.Queue(maxsize=QUEUE_STEPS)
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ generation thread side
    def launch(self) -> None:
        self._thread = threading.Thread(target=self._run, name="makima-codec", daemon=True)
        self._thread.start()

    def put(self, message: CodecMessage) -> None:
        """Queue a message (blocks while the codec is QUEUE_STEPS messages behind)."""
        self._queue.put(message)

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    # ------------------------------------------------------------------ codec thread
    def _run(self) -> None:
        torch.set_grad_enabled(False)
        if self.threads:
            torch.set_num_threads(self.threads)
        if self.tts.device.type == "cuda":
            torch.cuda.set_stream(torch.cuda.Stream(self.tts.device))
        if self.static is not None:
            try:
                with torch.inference_mode():
                    self.static.capture_all()
            except Exception:
                log.exception("codec CUDA graph capture failed; the codec decodes eagerly")
                self.static = None
        while not isinstance(message := self._queue.get(), Stop):
            self._handle(message)

    def _handle(self, message: CodecMessage) -> None:
        try:
            if isinstance(message, EndUtterance):
                message.job.emit(message.finished)
            elif isinstance(message, StartUtterance):
                _receive(message.ready, message.ref_codes)
                self.start(message.slot, message.ref_codes)
            else:
                _receive(message.ready, message.frame)
                self._deliver(message.frame, message.rows, message.verdict, message.held)
        except Exception:
            log.exception("codec stage failed")
            for row in message.rows if isinstance(message, FrameCodes) else ():
                row.job.emit(Finished(0, error=DECODE_ERROR))
                row.job.cancel()
        finally:
            if isinstance(message, FrameCodes) and message.decoded is not None:
                message.decoded.set()

    def _deliver(self, frame: torch.Tensor, rows: tuple[FrameRow, ...], verdict: StepVerdict,
                 held: tuple[int, ...] = ()) -> None:
        """Decode one frame and hand each row's AudioFrame to its job, first frames first; a rejected row
        fails its job alone."""
        firsts = tuple(row for row in rows if row.index == 0)
        codes = frame.cpu().numpy()
        if self.first_frames is FirstFrames.APART and self.static is None and 0 < len(firsts) < len(rows):
            for group in (firsts, tuple(row for row in rows if row.index > 0)):  # audio [k, 1920] by row of group
                with self.timer("codec"):
                    audio, rejected = self.decode_rows(frame, [row.slot for row in group])
                self._hand_over(group, codes, dict(zip((row.slot for row in group), audio, strict=True)),
                                rejected, verdict)
            return
        with self.timer("codec"):
            audio, rejected = self.decode(frame, held)
        self._hand_over(firsts + tuple(row for row in rows if row.index > 0), codes, audio, rejected, verdict)

    def _hand_over(self, rows: tuple[FrameRow, ...], codes: np.ndarray, audio, rejected: list[int],
                   verdict: StepVerdict) -> None:
        """Each row's AudioFrame to its job, in the order given; `audio[slot]` is the slot's samples."""
        last = verdict.last_slots()
        for slot, job, index, text_read in rows:
            if slot in rejected:  # this utterance alone fails; the batch's other rows decoded as usual
                log.error("codec rejected frame %d of job %s in slot %d: codes %s outside [0, %d)", index, job.id,
                          slot, codes[slot].tolist(), self.codebook_size)
                job.emit(Finished(index, error=DECODE_ERROR))
                job.cancel()
            else:
                job.emit(AudioFrame(index, codes[slot], audio[slot], last=slot in last, text_read=text_read))

    # ------------------------------------------------------------------ codec rows
    @torch.inference_mode()
    def start(self, slot: int, ref_codes: torch.Tensor | None) -> None:
        """A new utterance in `slot`: silence, or (ICL) the state right after its reference codes."""
        self.state.reset_rows([slot])
        if ref_codes is not None:
            self.state.copy_row_from(slot, self.primed.get(ref_codes, self.tts.device), 0)

    @torch.inference_mode()
    def decode(self, frame: torch.Tensor, held: tuple[int, ...] = ()) -> tuple[np.ndarray, list[int]]:
        """frame [n, 16] (rows 0..n-1 of the slots) -> (audio [n, 1920] float32, rejected rows); the `held`
        rows' codec state is left as it was (their audio is meaningless).

        A row holding an id outside the codebook [0, codebook_size) is rejected: it is decoded as
        silence (code 0) so that the other rows' audio is unaffected, and its slot is returned so that
        the engine fails that utterance alone. The check runs on the device; its answer is read with
        the audio (no extra sync)."""
        valid = self._in_codebook(frame)  # [n]
        codes = frame * valid[:, None]
        kept = self.state.take_rows(held) if held else None
        if self.static is not None:
            audio = self.static.decode(codes)  # [n, 1920]
        else:
            audio = self.tts.codec.decode_step(codes[:, :, None], self.state.first_rows(frame.shape[0]))  # [n, 1920]
        if kept is not None:
            self.state.put_rows(held, kept)
        audio, valid = audio.cpu().numpy(), valid.cpu().numpy()
        return audio, [int(row) for row in np.flatnonzero(~valid)]

    @torch.inference_mode()
    def decode_rows(self, frame: torch.Tensor, slots: list[int]) -> tuple[np.ndarray, list[int]]:
        """Only the given slots' rows of frame [n, 16] -> (audio [k, 1920] in the order of `slots`, rejected
        slots). Those rows' codec state is gathered, advanced and put back; every other row's is untouched."""
        index = torch.as_tensor(slots, dtype=torch.long, device=frame.device)
        picked = frame.index_select(0, index)  # [k, 16]
        valid = self._in_codebook(picked)  # [k]
        rows = self.state.take_rows(slots)
        audio = self.tts.codec.decode_step((picked * valid[:, None])[:, :, None], rows)  # [k, 1920]
        self.state.put_rows(slots, rows)
        audio, valid = audio.cpu().numpy(), valid.cpu().numpy()
        return audio, [slots[i] for i in np.flatnonzero(~valid)]

    def _in_codebook(self, frame: torch.Tensor) -> torch.Tensor:
        """frame [n, 16] -> [n] bool: every code of the row is a codebook id (checked on the device)."""
        return ((frame >= 0) & (frame < self.codebook_size)).all(dim=1)


def _receive(ready: torch.cuda.Event | None, tensor: torch.Tensor | None) -> None:
    """Codec thread, CUDA: wait (on the device) for the generation work behind a hand-over, and tell the
    allocator the tensor is now used on this stream too."""
    if ready is None:
        return
    stream = torch.cuda.current_stream()
    stream.wait_event(ready)
    if tensor is not None:
        tensor.record_stream(stream)
