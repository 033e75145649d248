"""VoiceStore: the voices a server can speak with, their manifests, uploads and deletion.

Two sources:
- built-in voices, read-only, one folder each under `voices/` with a `voice.json` manifest
  (`name`, `language`, `description`, `audio`, `transcript` file names) and the files it names; a manifest
  whose clip is missing is listed as not provisioned (its `setup` field, if any, says what to do);
- uploaded voices under `DATA_DIR/voices/<id>/` (`voice.json` with the transcript in `transcriptText`,
  `reference.wav` normalised to 24 kHz mono, `prompt-*.safetensors`), written atomically (a `.tmp-*`
  staging folder renamed into place).

The prompts derived from the clips are kept by `prompts.PromptCache` (`self.prompts`): in an uploaded
voice's folder, or under `DATA_DIR/cache/builtin/<id>/` for a built-in one. Every method that touches the
disk or the model is blocking: call it from a worker thread.

Deleting an uploaded voice renames its folder to `.trash-*` (gone from listings at once), drops its
prompts from memory, then removes the folder (clip, manifest with the transcript, saved prompts); leftover
`.trash-*` folders are removed at start-up. A prompt still being computed when its voice is deleted is
neither saved nor kept (`prompts.files_lock` orders the two; the manifest's identity tells a re-created
voice of the same id apart).
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..voice_prompt import VoicePrompt
from .errors import InvalidVoiceId, VoiceExists, VoiceNotFound, VoiceReadOnly
from .prompts import SAMPLE_RATE, PromptCache, PromptModel, prompt_file
from .upload import decode_upload

VOICE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MANIFEST = "voice.json"
REFERENCE = "reference.wav"


@dataclass(frozen=True)
class Voice:
    id: str
    name: str
    language: str | None
    description: str
    mode: str  # "icl" | "xvector" | "preset"
    built_in: bool
    created_at: str | None
    transcript: str | None = None
    audio_path: Path | None = None
    provisioned: bool = True
    setup_hint: str | None = None  # what the operator must do when not provisioned

    def to_json(self, default_id: str) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "language": self.language,
            "description": self.description,
            "isDefault": self.id == default_id,
            "mode": self.mode,
            "builtIn": self.built_in,
            "createdAt": self.created_at,
            "provisioned": self.provisioned,
            "transcript": self.transcript,
        }


def check_voice_id(voice_id: str) -> str:
    if not isinstance(voice_id, str) or not VOICE_ID.fullmatch(voice_id):
        raise InvalidVoiceId(
            f"invalid voice id {voice_id!r}: use 1-64 characters a-z, 0-9, '_' or '-', starting with a letter or digit"
        )
    return voice_id


def not_found(voice_id: str) -> VoiceNotFound:
    return VoiceNotFound(f"voice {voice_id!r} not found (GET /api/v1/voices lists the voices)")


def taken(voice_id: str) -> VoiceExists:
    return VoiceExists(f"voice id {voice_id!r} is taken; choose another id or DELETE it first")


def _identity(folder: Path, voice_id: str, missing_ok: bool = False) -> tuple[int, int, int] | None:
    """Which incarnation of an uploaded voice this is: its manifest is written once, when it is added."""
    try:
        st = (folder / MANIFEST).stat()
    except FileNotFoundError:
        if missing_ok:
            return None
        raise not_found(voice_id) from None
    return st.st_dev, st.st_ino, st.st_mtime_ns


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class VoiceStore:
    def __init__(
        self,
        builtin_dir: Path,
        data_dir: Path,
        *,
        cache_size: int = 32,
        min_seconds: float = 1.0,
        max_seconds: float = 30.0,
        max_bytes: int = 10 * 1024 * 1024,
    ):
        self.builtin_dir = Path(builtin_dir)
        self.data_dir = Path(data_dir)
        self.uploads_dir = self.data_dir / "voices"
        self.cache_dir = self.data_dir / "cache" / "builtin"
        self.min_seconds, self.max_seconds, self.max_bytes = min_seconds, max_seconds, max_bytes
        self.prompts = PromptCache(cache_size)
        self.uploads_dir.mkdir(parents=True, exist_ok=True)
        for leftover in self.uploads_dir.glob(".trash-*"):  # a deletion that was interrupted
            shutil.rmtree(leftover)

    # --- listing -----------------------------------------------------------------------------------

    def list(self) -> list[Voice]:
        voices = {v.id: v for v in self._builtin_voices()}
        for v in self._uploaded_voices():
            voices.setdefault(v.id, v)
        return sorted(voices.values(), key=lambda v: (not v.built_in, v.id))

    def get(self, voice_id: str) -> Voice:
        """The voice's manifest, read once (VoiceNotFound, InvalidVoiceId)."""
        check_voice_id(voice_id)
        for folder, built_in in ((self.builtin_dir / voice_id, True), (self.uploads_dir / voice_id, False)):
            if (folder / MANIFEST).is_file():
                return self._read_voice(folder, built_in)
        raise not_found(voice_id)

    def _builtin_voices(self) -> list[Voice]:
        if not self.builtin_dir.is_dir():
            return []
        return [self._read_voice(d, True) for d in sorted(self.builtin_dir.iterdir()) if (d / MANIFEST).is_file()]

    def _uploaded_voices(self) -> list[Voice]:
        return [
            self._read_voice(d, False)
            for d in sorted(self.uploads_dir.iterdir())
            if not d.name.startswith(".") and (d / MANIFEST).is_file()
        ]

    def _read_voice(self, folder: Path, built_in: bool) -> Voice:
        meta = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        audio = folder / meta.get("audio", REFERENCE)
        transcript = meta.get("transcriptText")
        if transcript is None and meta.get("transcript") and (folder / meta["transcript"]).is_file():
            transcript = (folder / meta["transcript"]).read_text(encoding="utf-8").strip() or None
        provisioned = audio.is_file()
        hint = None
        if not provisioned:
            hint = meta.get("setup") or f"put a reference clip at {audio} (24 kHz mono WAV, 3-20 s)"
        return Voice(
            id=folder.name,
            name=meta.get("name", folder.name),
            language=meta.get("language"),
            description=meta.get("description", ""),
            mode="icl" if transcript else "xvector",
            built_in=built_in,
            created_at=meta.get("createdAt"),
            transcript=transcript,
            audio_path=audio if provisioned else None,
            provisioned=provisioned,
            setup_hint=hint,
        )

    # --- uploads -----------------------------------------------------------------------------------

    def decode_upload(self, data: bytes) -> np.ndarray:
        """Bytes of an uploaded clip → float32 mono at 24 kHz, or a `BadAudio` saying what to fix."""
        return decode_upload(data, min_seconds=self.min_seconds, max_seconds=self.max_seconds, max_bytes=self.max_bytes)

    def check_free(self, voice_id: str) -> None:
        """Raise `VoiceExists` (or `InvalidVoiceId`) unless a new voice may take `voice_id`."""
        check_voice_id(voice_id)
        if (self.builtin_dir / voice_id).exists() or (self.uploads_dir / voice_id).exists():
            raise taken(voice_id)

    def add(
        self,
        voice_id: str,
        wav: np.ndarray,
        *,
        model: PromptModel,
        transcript: str | None = None,
        name: str | None = None,
        language: str | None = None,
    ) -> Voice:
        """Store a new uploaded voice and its prompt for `model` (blocking: computes the prompt)."""
        from ..audio import write_wav

        self.check_free(voice_id)
        transcript = (transcript or "").strip() or None
        prompt = model.create_voice_prompt(wav, SAMPLE_RATE, transcript)
        meta = {
            "name": (name or "").strip() or voice_id,
            "language": language or None,
            "description": "uploaded voice",
            "audio": REFERENCE,
            "transcriptText": transcript,
            "createdAt": _now_iso(),
        }
        staging = Path(tempfile.mkdtemp(dir=self.uploads_dir, prefix=".tmp-"))
        try:
            write_wav(staging / REFERENCE, wav, SAMPLE_RATE)
            (staging / MANIFEST).write_text(json.dumps(meta, indent=2), encoding="utf-8")
            prompt.save(staging / prompt_file(model.fingerprint))
            with self.prompts.files_lock:
                os.rename(staging, self.uploads_dir / voice_id)  # atomic: the voice appears whole or not at all
                self.prompts.remember(voice_id, model.fingerprint, prompt)
        except FileExistsError:
            shutil.rmtree(staging, ignore_errors=True)
            raise taken(voice_id) from None
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if exc.errno == errno.ENOTEMPTY:  # the id appeared meanwhile
                raise VoiceExists(f"voice id {voice_id!r} is taken") from None
            raise
        return self.get(voice_id)

    def delete(self, voice_id: str) -> None:
        voice = self.get(voice_id)
        if voice.built_in:
            raise VoiceReadOnly(f"voice {voice_id!r} is built in and cannot be deleted")
        trash = self.uploads_dir / f".trash-{voice_id}-{os.getpid()}-{time.monotonic_ns()}"
        with self.prompts.files_lock:
            os.rename(self.uploads_dir / voice_id, trash)  # gone from listings at once, atomically
            self.prompts.forget(voice_id)
        shutil.rmtree(trash)  # a failure leaves .trash-*, removed at the next start

    # --- prompts -----------------------------------------------------------------------------------

    def cached_prompt(self, voice_id: str, fingerprint: str) -> VoicePrompt | None:
        """The in-memory prompt if there is one (cheap: safe to call on the event loop)."""
        return self.prompts.cached(voice_id, fingerprint)

    def prompt(self, voice_id: str, model: PromptModel) -> VoicePrompt:
        """The voice's prompt for `model`: memory, else its saved file, else computed and saved."""
        cached = self.prompts.cached(voice_id, model.fingerprint)
        if cached is not None:
            return cached
        return self.prompt_for(self.get(voice_id), model)

    def prompt_for(self, voice: Voice, model: PromptModel) -> VoicePrompt:
        """`prompt` for a voice whose manifest was already read (`get`): reads no manifest again."""
        if not voice.provisioned or voice.audio_path is None:
            raise VoiceNotFound(f"voice {voice.id!r} is not provisioned yet: {voice.setup_hint}")
        folder = (self.cache_dir if voice.built_in else self.uploads_dir) / voice.id
        identity = None if voice.built_in else _identity(folder, voice.id)

        def still_current() -> bool:  # built-in voices are never deleted
            return identity is None or _identity(folder, voice.id, missing_ok=True) == identity

        return self.prompts.load_or_compute(
            voice.id, folder, model, clip=voice.audio_path, transcript=voice.transcript, still_current=still_current
        )
