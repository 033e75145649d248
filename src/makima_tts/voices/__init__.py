"""Voices: `store` (manifests, uploads, deletion; `voices/`, `DATA_DIR/voices/`), `prompts` (the prompt
cache by model fingerprint), `resolve` (voice id → the choice for the loaded model), `errors` (codes, no
HTTP), `upload` (decoding a clip). The names other modules import are re-exported here."""

from .errors import (
    AudioTooLarge,
    BadAudio,
    InvalidVoiceId,
    UnsupportedAudio,
    VoiceError,
    VoiceExists,
    VoiceNotFound,
    VoiceReadOnly,
)
from .prompts import PromptCache, PromptModel
from .resolve import Clone, Design, PresetSpeaker, Resolved, VoiceChoice, VoiceResolver
from .store import Voice, VoiceStore, check_voice_id

__all__ = [
    "AudioTooLarge",
    "BadAudio",
    "Clone",
    "Design",
    "InvalidVoiceId",
    "PresetSpeaker",
    "PromptCache",
    "PromptModel",
    "Resolved",
    "UnsupportedAudio",
    "Voice",
    "VoiceChoice",
    "VoiceError",
    "VoiceExists",
    "VoiceNotFound",
    "VoiceReadOnly",
    "VoiceResolver",
    "VoiceStore",
    "check_voice_id",
]
