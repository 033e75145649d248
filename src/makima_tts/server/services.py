"""What the routes and sessions share: settings, the model, voices, metrics, limits, and the helpers that
turn a voice id, a language and a text into engine requests."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..engine.types import SpeechRequest
from ..voices import VoiceError, VoiceNotFound, VoiceStore
from .limits import ClientLimits
from .metrics import Metrics
from .model_manager import ModelManager
from .settings import Settings

if TYPE_CHECKING:
    from ..model.tts import TTSModel

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
            return self.models.canonical_language(voice.language) or self.settings.default_language
        except (VoiceError, ValueError, OSError):
            return self.settings.default_language

    def speech_request(self, text: str, voice_args: dict[str, Any], language: str) -> SpeechRequest:
        return SpeechRequest(text=text, language=language, max_frames=self.settings.max_frames or None, **voice_args)
