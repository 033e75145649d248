"""Voices: `store` (listing, uploads, deletion), `manifests` (a voice's manifest and its objects' keys),
`objects` (the shared store backend: `dir_objects` a directory, `s3_objects` an S3 bucket), `prompts` (the
prompt cache by model fingerprint), `resolve` (voice id → the choice for the loaded model), `errors`
(codes, no HTTP), `upload` (decoding a clip). The names other modules import are re-exported here."""

from .errors import (
    AudioTooLarge,
    BadAudio,
    InvalidVoiceId,
    UnsupportedAudio,
    VoiceError,
    VoiceExists,
    VoiceNotFound,
    VoiceReadOnly,
    VoiceStoreUnavailable,
)
from .manifests import Voice, check_voice_id
from .objects import ObjectStore, open_objects
from .prompts import PromptCache, PromptModel
from .resolve import Clone, Design, PresetSpeaker, Resolved, VoiceChoice, VoiceResolver
from .store import VoiceStore

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
    "VoiceStoreUnavailable",
    "ObjectStore",
    "open_objects",
    "check_voice_id",
]
