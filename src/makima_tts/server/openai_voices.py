"""OpenAI voice names (alloy, echo, ...) and our voice ids, for `/v1/audio/speech` and `/v1/audio/voices`.

A `voice` is looked up in this order:
1. `TTS_OPENAI_VOICE_MAP` (an operator's `name=voice` pairs): the voice it names;
2. one of our voice ids (a stored voice, or a speaker of the loaded CustomVoice model): that voice;
3. an OpenAI name: the speaker `SPEAKER_FOR` gives it when the loaded model has that speaker (the official
   CustomVoice checkpoints do), else `TTS_DEFAULT_VOICE`;
4. anything else: not found (the route answers 400, naming the voices that exist).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ..voices import VoiceError
from ..voices.resolve import preset_speakers, preset_voices
from .services import Services
from .speech_requests import check_voice

OPENAI_VOICE_NAMES = ("alloy", "ash", "ballad", "cedar", "coral", "echo", "fable", "marin", "nova", "onyx", "sage",
                      "shimmer", "verse")
# OpenAI's voice -> the official CustomVoice speaker closest in character (voice gender and register).
SPEAKER_FOR = {
    "alloy": "ryan", "ash": "eric", "ballad": "dylan", "cedar": "ryan", "coral": "vivian", "echo": "ryan",
    "fable": "aiden", "marin": "serena", "nova": "serena", "onyx": "uncle_fu", "sage": "ono_anna",
    "shimmer": "sohee", "verse": "aiden",
}


@dataclass(frozen=True)
class ListedVoice:
    id: str
    name: str
    language: str | None
    alias_of: str | None  # an OpenAI name: the voice it speaks with


async def _speakable(services: Services, voice_id: str) -> bool:
    try:
        await check_voice(services, voice_id)
    except VoiceError:
        return False
    return True


async def voice_for(services: Services, requested: str) -> str:
    """The voice id to speak `requested` with (steps 1-3 above); an unknown id comes back unchanged, for the
    speech route's voice check to refuse."""
    name = requested.strip()
    mapped = services.settings.openai_voice_map.get(name.lower())
    if mapped is not None:
        return mapped
    key = name.lower()
    if key not in OPENAI_VOICE_NAMES:
        return name
    if await _speakable(services, key):
        return key
    speaker = SPEAKER_FOR[key]
    if speaker in (s.lower() for s in preset_speakers(services.models.tts)):
        return speaker
    return services.settings.default_voice


async def own_voices(services: Services) -> list[ListedVoice]:
    """Our voices the loaded model can speak now (preset speakers, provisioned stored voices)."""
    stored = await asyncio.to_thread(services.voices.list)
    presets = preset_voices(services.models.tts)
    listed = []
    for voice in presets + [v for v in stored if v.id not in {p.id for p in presets}]:
        if voice.provisioned and await _speakable(services, voice.id):
            listed.append(ListedVoice(voice.id, voice.name, voice.language, None))
    return listed


async def all_voices(services: Services) -> list[ListedVoice]:
    """Our voices, then every OpenAI name with the voice it maps to."""
    own = await own_voices(services)
    aliases = [ListedVoice(name, name, None, await voice_for(services, name))
               for name in OPENAI_VOICE_NAMES if name not in {v.id for v in own}]
    return own + aliases


async def unknown_voice_message(services: Services, requested: str, reason: str) -> str:
    own = ", ".join(v.id for v in await own_voices(services)) or "none"
    return (f"{reason}. Voices of this server: {own}; OpenAI's names ({', '.join(OPENAI_VOICE_NAMES)}) map onto "
            f"them (GET /v1/audio/voices lists the mapping)")
