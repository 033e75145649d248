"""One utterance in the engine (`Job`): its request, its sink, its cancel flag and streamed text, what its
client has been sent so far (`lead`, which the engine's first-audio-first rule reads), and where its time
to first audio went (`FirstAudio`, handed to the engine's `on_first_audio` observer with its first frame).

Created by `Engine.submit`; `emit` runs on the codec thread, `append_text` and `cancel` on any thread.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from .codec_stage import FrameRow
from .text_intake import OpenText, TextPiece
from .types import AUDIO_RATE, AudioFrame, EngineEvent, Finished, SpeechRequest

if TYPE_CHECKING:
    from .engine import Engine

log = logging.getLogger(__name__)
Sink = Callable[[EngineEvent], None]


class FirstAudio(NamedTuple):
    """A job's time to first audio inside the engine, in seconds, by phase."""

    queued: float  # submitted -> taken for admission (the step in flight, or a slot, was waited for)
    prefill: float  # taken -> prefilled (its prompt built and its packed prefill passes)
    first_frame: float  # prefilled -> its first frame handed over (one frame step and the codec's decode)


class Job:
    _ids = itertools.count(1)

    def __init__(self, engine: Engine, request: SpeechRequest, sink: Sink):
        self.id = next(self._ids)
        self.request, self._sink, self._engine = request, sink, engine
        self.cancelled = False
        self.done = threading.Event()
        self.text = OpenText(engine.tts, request) if request.text_open else None  # generation thread only
        self.submitted_at = time.perf_counter()
        self.taken_at: float | None = None  # perf_counter when admission took it (generation thread)
        self.prefilled_at: float | None = None  # perf_counter when its prefill completed (generation thread)
        self.first_audio_at: float | None = None  # perf_counter of its first AudioFrame (codec thread)
        self.audio_sent_s = 0.0  # seconds of audio handed to the sink so far

    def append_text(self, text: str, close: bool = False) -> None:
        """More text for a job submitted with `text_open`; `close` ends its text (any thread)."""
        if self.text is None:
            raise ValueError("this job's text was given whole (submit it with text_open=True to stream text)")
        self._engine._post_text(TextPiece(self, text, close))

    def lead(self, now: float) -> float:
        """Seconds of audio its client has buffered: audio sent minus wall time since the first frame."""
        return 0.0 if self.first_audio_at is None else self.audio_sent_s - (now - self.first_audio_at)

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
        elif isinstance(event, AudioFrame):
            if self.first_audio_at is None:
                self.first_audio_at = time.perf_counter()
                self._observe_first_audio()
            self.audio_sent_s += event.audio.shape[-1] / AUDIO_RATE
        try:
            self._sink(event)
        except Exception:  # a broken sink must never take the engine down
            log.exception("engine sink of job %s raised", self.id)

    def _observe_first_audio(self) -> None:
        observer = self._engine.on_first_audio
        if observer is None or self.taken_at is None or self.prefilled_at is None:
            return
        phases = FirstAudio(self.taken_at - self.submitted_at, self.prefilled_at - self.taken_at,
                            self.first_audio_at - self.prefilled_at)
        try:
            observer(phases)
        except Exception:  # an observer must never take the codec thread down
            log.exception("first-audio observer raised")


def first_audio_waits(rows: tuple[FrameRow, ...], now: float, step_s: float) -> bool:
    """Whether the step after this frame waits for its decode: the frame carries a first frame and
    every running stream has more than `step_s` of audio buffered on its client."""
    return any(row.index == 0 for row in rows) and all(row.index == 0 or row.job.lead(now) > step_s for row in rows)
