"""What one text asks of the engine, for the WebSocket and HTTP routes alike: the voice checked at
admission and resolved once per utterance (both off the event loop: they read manifests, and resolving a
clone may compute its prompt on the model-work thread), then one `SpeechRequest` per text piece."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..engine.types import SpeechRequest
from ..voices import Resolved, Voice, VoiceError, VoiceStoreUnavailable
from .services import Services

if TYPE_CHECKING:
    from ..model.tts import TTSModel


async def check_voice(services: Services, voice_id: str) -> Voice | None:
    """Raise `VoiceNotFound` (saying what to do) unless `voice_id` can be spoken; no model work. Returns
    the manifest it read (None for a preset speaker), so that resolving does not read it again."""
    return await asyncio.to_thread(services.resolver.check, voice_id, services.models.tts)


def voice_error_code(exc: VoiceError) -> str:
    """The WebSocket error code for a voice that cannot be spoken: the store being unreachable is not the
    voice being missing."""
    return exc.code if isinstance(exc, VoiceStoreUnavailable) else "VOICE_NOT_FOUND"


@dataclass(frozen=True)
class Voicing:
    """A resolved voice and the language to speak in: the request fields shared by every text piece."""

    resolved: Resolved
    language: str
    max_frames: int | None

    def request(self, text: str) -> SpeechRequest:
        return SpeechRequest(text=text, language=self.language, max_frames=self.max_frames,
                             **self.resolved.choice.request_fields())


async def resolve_voicing(services: Services, tts: TTSModel, voice_id: str, language: str | None,
                          checked: Voice | None = None) -> Voicing:
    """`language` None: the voice's own (or the configured default); `checked`: what `check_voice` read."""
    resolver = services.resolver
    run = services.models.run_blocking if resolver.needs_model_work(voice_id, tts) else asyncio.to_thread
    resolved = await run(resolver.resolve, voice_id, tts, checked)
    return Voicing(resolved, language or resolved.language, services.settings.max_frames or None)
