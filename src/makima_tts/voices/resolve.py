"""VoiceResolver: a voice id → ONE typed choice for the loaded model, and the language to speak it in.

- CustomVoice: `PresetSpeaker(name)`, the checkpoint's speaker of that name (any case); the default voice
  maps to the first speaker;
- VoiceDesign: `Design(instruct)`, the configured default instruct, whatever the voice;
- Base: `Clone(prompt)`, the stored voice's prompt (from memory or disk, else computed: model work).

The language is the manifest's own when it names one the checkpoint knows, else the configured default.
`check` (admission) does no model work; `resolve` reads the voice's manifest at most once and may compute
a prompt. Both are blocking: call them from a worker thread. Owns no files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..voice_prompt import VoicePrompt
from .errors import VoiceError, VoiceNotFound
from .store import Voice, VoiceStore

if TYPE_CHECKING:
    from ..model.tts import TTSModel


@dataclass(frozen=True)
class PresetSpeaker:
    name: str  # the checkpoint's spelling

    def request_fields(self) -> dict[str, Any]:
        return {"speaker": self.name}


@dataclass(frozen=True)
class Design:
    instruct: str

    def request_fields(self) -> dict[str, Any]:
        return {"instruct": self.instruct}


@dataclass(frozen=True)
class Clone:
    prompt: VoicePrompt

    def request_fields(self) -> dict[str, Any]:
        return {"voice": self.prompt}


VoiceChoice = PresetSpeaker | Design | Clone


@dataclass(frozen=True)
class Resolved:
    choice: VoiceChoice  # `choice.request_fields()`: the SpeechRequest's voice=/speaker=/instruct=
    language: str  # the voice's own language (checkpoint spelling), else the configured default


def preset_speakers(tts: TTSModel | None) -> list[str]:
    """The loaded model's speakers (CustomVoice), none while no model is loaded."""
    return list(tts.config.speakers) if tts is not None else []


def preset_voices(tts: TTSModel | None) -> list[Voice]:
    """The speakers of the loaded model as listed voices (id: the name in lower case)."""
    return [
        Voice(id=name.lower(), name=name, language=None, description="preset speaker of the loaded model",
              mode="preset", built_in=True, created_at=None)
        for name in preset_speakers(tts)
    ]


def preset_voice(voice_id: str, tts: TTSModel | None) -> Voice | None:
    """The preset speaker listed as `voice_id`, if the loaded model has one."""
    return next((v for v in preset_voices(tts) if v.id == voice_id), None)


def canonical_language(language: str | None, choices: Sequence[str]) -> str | None:
    """The checkpoint's spelling of `language` (case-insensitive), or ValueError naming the choices."""
    if language is None:
        return None
    for name in choices:
        if name.lower() == language.strip().lower():
            return name
    raise ValueError(f"unknown language {language!r}; choose one of: {', '.join(choices)}")


def not_provisioned(voice: Voice) -> VoiceNotFound:
    return VoiceNotFound(f"voice {voice.id!r} is not provisioned yet: {voice.setup_hint}")


class VoiceResolver:
    def __init__(self, store: VoiceStore, *, default_voice: str, default_instruct: str, default_language: str):
        self.store = store
        self.default_voice, self.default_instruct = default_voice, default_instruct
        self.default_language = default_language

    def check(self, voice_id: str, tts: TTSModel | None) -> Voice | None:
        """Admission: raise `VoiceNotFound` (or `InvalidVoiceId`), saying what to do, unless `voice_id` can
        be spoken on `tts` (None while loading: then it must be a stored, provisioned voice). No model work;
        reads the manifest (and returns it, for `resolve`) except for a CustomVoice speaker and, on
        VoiceDesign, the default voice."""
        kind = tts.config.tts_model_type if tts is not None else None
        if kind == "custom_voice":
            self._speaker(voice_id, tts)
            return None
        if kind == "voice_design" and voice_id == self.default_voice:
            return None
        voice = self.store.get(voice_id)
        if not voice.provisioned:
            raise not_provisioned(voice)
        return voice

    def resolve(self, voice_id: str, tts: TTSModel, checked: Voice | None = None) -> Resolved:
        """The choice and language for `voice_id` on `tts`. `checked`: the manifest `check` returned (not
        read again), else it is read once; on a Base model it computes the prompt unless one is in memory
        or on disk (model work: `needs_model_work` says when)."""
        kind = tts.config.tts_model_type
        if kind == "base":
            voice = checked if checked is not None and checked.id == voice_id else self.store.get(voice_id)
            prompt = self.store.prompt_for(voice, tts)  # memory first, then the saved file, else computed
            return Resolved(Clone(prompt), self._language(voice, tts))
        try:
            voice = checked if checked is not None and checked.id == voice_id else self.store.get(voice_id)
        except (VoiceError, OSError, ValueError):
            voice = None  # a speaker or an id with no manifest: the default language
        choice = self._speaker(voice_id, tts) if kind == "custom_voice" else Design(self.default_instruct)
        return Resolved(choice, self._language(voice, tts))

    def needs_model_work(self, voice_id: str, tts: TTSModel) -> bool:
        """Whether `resolve` may compute a prompt (Base, none in memory); cheap: safe on the event loop."""
        return tts.config.tts_model_type == "base" and self.store.cached_prompt(voice_id, tts.fingerprint) is None

    def _speaker(self, voice_id: str, tts: TTSModel) -> PresetSpeaker:
        speakers = preset_speakers(tts)
        for name in speakers:
            if name.lower() == voice_id.lower():
                return PresetSpeaker(name)
        if voice_id == self.default_voice and speakers:
            return PresetSpeaker(speakers[0])
        raise VoiceNotFound(
            f"voice {voice_id!r} is not a speaker of the loaded CustomVoice model; choose one of: {', '.join(speakers)}"
        )

    def _language(self, voice: Voice | None, tts: TTSModel) -> str:
        try:
            own = canonical_language(voice.language if voice is not None else None, tts.config.languages)
        except ValueError:
            own = None
        return own or self.default_language
