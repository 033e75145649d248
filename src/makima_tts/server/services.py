"""What the routes and sessions share: settings, the model, voices, metrics, and the helpers that turn a
voice id, a language and a text into engine requests and engine frames into client audio.

`engine_stream` is the one bridge from the engine thread to the event loop: the engine's sink only posts
events with `call_soon_threadsafe`, and leaving the stream early (cancellation, disconnect) cancels the job.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..engine.types import AudioFrame, EngineEvent, Finished, SpeechRequest
from ..voices import VoiceError, VoiceNotFound, VoiceStore
from .limits import ClientLimits
from .metrics import Metrics
from .model_manager import ModelManager
from .settings import Settings

if TYPE_CHECKING:
    from ..engine.engine import Engine
    from ..model.tts import TTSModel

MODEL_RATE = 24000
# OpenAI's voice names: clients often send one; they get the default voice.
OPENAI_VOICES = frozenset(
    {"alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse"}
)


@dataclass
class Services:
    settings: Settings
    models: ModelManager
    voices: VoiceStore
    metrics: Metrics
    limits: ClientLimits
    sessions: set[Any] = field(default_factory=set)
    shutting_down: bool = False

    def canonical_language(self, language: str | None) -> str | None:
        """The checkpoint's spelling of `language` (case-insensitive), or ValueError naming the choices."""
        if language is None:
            return None
        choices = self.models.languages()
        for name in choices:
            if name.lower() == language.strip().lower():
                return name
        raise ValueError(f"unknown language {language!r}; choose one of: {', '.join(choices)}")

    def preset_speakers(self) -> list[str]:
        tts = self.models.tts
        return list(tts.config.speakers) if tts is not None else []

    async def voice_exists(self, voice_id: str) -> None:
        """Raise `VoiceNotFound` (with what to do) unless `voice_id` can be spoken (no model work)."""
        if any(s.lower() == voice_id.lower() for s in self.preset_speakers()):
            return
        tts = self.models.tts
        if tts is not None and tts.config.tts_model_type != "base" and voice_id == self.settings.default_voice:
            return
        voice = await asyncio.to_thread(self.voices.get, voice_id)
        if not voice.provisioned:
            raise VoiceNotFound(f"voice {voice_id!r} is not provisioned yet: {voice.setup_hint}")

    async def voice_args(self, tts: TTSModel, voice_id: str) -> dict[str, Any]:
        """The SpeechRequest fields that select `voice_id` on the loaded model (a clone, preset or design)."""
        model_type = tts.config.tts_model_type
        if model_type == "voice_design":
            return {"instruct": self.settings.default_instruct}
        if model_type == "custom_voice":
            speakers = list(tts.config.speakers)
            for name in speakers:
                if name.lower() == voice_id.lower():
                    return {"speaker": name}
            if voice_id == self.settings.default_voice and speakers:
                return {"speaker": speakers[0]}
            raise VoiceNotFound(
                f"voice {voice_id!r} is not a speaker of the loaded CustomVoice model; "
                f"choose one of: {', '.join(speakers)}"
            )
        prompt = self.voices.cached_prompt(voice_id, tts.fingerprint)
        if prompt is None:
            prompt = await self.models.run_blocking(self.voices.prompt, voice_id, tts)
        return {"voice": prompt}

    async def default_language(self, voice_id: str) -> str:
        """The voice's own language when it names one the checkpoint knows, else the configured default."""
        try:
            voice = await asyncio.to_thread(self.voices.get, voice_id)
            return self.canonical_language(voice.language) or self.settings.default_language
        except (VoiceError, ValueError, OSError):
            return self.settings.default_language

    def speech_request(self, text: str, voice_args: dict[str, Any], language: str) -> SpeechRequest:
        return SpeechRequest(text=text, language=language, max_frames=self.settings.max_frames or None, **voice_args)


async def engine_stream(engine: Engine, request: SpeechRequest) -> AsyncIterator[EngineEvent]:
    """Frames of one engine job as they are made, then its `Finished`; leaving early cancels the job."""
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[EngineEvent] = asyncio.Queue()

    def sink(event: EngineEvent) -> None:  # runs in the engine thread: never blocks
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is listening any more
            loop.call_soon_threadsafe(events.put_nowait, event)

    job = engine.submit(request, sink)
    try:
        while True:
            event = await events.get()
            yield event
            if isinstance(event, Finished):
                return
    finally:
        job.cancel()


class AudioOut:
    """Engine audio (24 kHz float32) → the client's rate and encoding, continuous across frames."""

    def __init__(self, sample_rate: int, encoding: str):
        from ..audio import StreamingResampler

        self.sample_rate, self.encoding = sample_rate, encoding
        self._resampler = StreamingResampler(MODEL_RATE, sample_rate) if sample_rate != MODEL_RATE else None

    def convert(self, frame: AudioFrame) -> np.ndarray:
        audio = np.asarray(frame.audio, dtype=np.float32)
        return self._resampler.process(audio) if self._resampler is not None else audio

    def tail(self) -> np.ndarray:
        """What the resampler still holds at the end of an utterance."""
        if self._resampler is None:
            return np.zeros(0, dtype=np.float32)
        return self._resampler.flush()

    def encode(self, samples: np.ndarray) -> bytes:
        from ..audio import encode_pcm

        return encode_pcm(samples, self.encoding)
