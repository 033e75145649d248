"""VoiceStore: the voices a server can speak with, and their prompts.

Two sources:
- built-in voices, read-only, one folder each under `voices/` with a `voice.json` manifest
  (`name`, `language`, `description`, `audio`, `transcript` file names) and the files it names; a manifest
  whose clip is missing is listed as not provisioned;
- uploaded voices under `DATA_DIR/voices/<id>/` (`voice.json`, `reference.wav` normalised to 24 kHz mono),
  written atomically (a temporary folder renamed into place).

A prompt (`VoicePrompt`) depends on the loaded weights, so the reference clip is the source of truth and
the computed prompt is saved beside it as `prompt-<fingerprint hash>.safetensors` (built-in voices: under
`DATA_DIR/cache/builtin/<id>/`), recomputed when the model's fingerprint changes, and kept in a small
in-memory LRU. Every method that touches the model or the disk is blocking: call it from a worker thread.

Deleting an uploaded voice removes its folder (clip, manifest with the transcript, saved prompts) and its
prompts in memory; a prompt still being computed for it when it is deleted is neither saved nor kept
(`_files_lock` orders the two, and the folder's identity tells a re-created voice of the same id apart).
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from .voice_prompt import VoicePrompt

VOICE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
SAMPLE_RATE = 24000
MANIFEST = "voice.json"
REFERENCE = "reference.wav"


class VoiceError(Exception):
    """A request about voices that cannot be served; `status` is the HTTP status that fits."""

    status = 400
    code = "INVALID_VOICE"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class VoiceNotFound(VoiceError):
    status, code = 404, "VOICE_NOT_FOUND"


class VoiceExists(VoiceError):
    status, code = 409, "VOICE_EXISTS"


class VoiceReadOnly(VoiceError):
    status, code = 403, "VOICE_READ_ONLY"


class InvalidVoiceId(VoiceError):
    status, code = 422, "INVALID_VOICE_ID"


class BadAudio(VoiceError):
    status, code = 422, "BAD_AUDIO"


class UnsupportedAudio(BadAudio):
    status, code = 415, "UNSUPPORTED_AUDIO"


class AudioTooLarge(BadAudio):
    status, code = 413, "AUDIO_TOO_LARGE"


class PromptModel(Protocol):
    fingerprint: str

    def create_voice_prompt(self, wav: np.ndarray, sr: int, ref_text: str | None) -> VoicePrompt: ...


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


def _fingerprint_tag(fingerprint: str) -> str:
    return hashlib.sha256(fingerprint.encode()).hexdigest()[:16]


def _resample(wav: np.ndarray, sr: int) -> np.ndarray:
    from .audio import resample

    return resample(wav, sr, SAMPLE_RATE)


def _channels(data: bytes) -> int | None:
    """The channel count from the file header, or None when it cannot be read (decoding reports that)."""
    import soundfile

    try:
        return soundfile.info(io.BytesIO(data)).channels
    except Exception:
        return None


def _identity(folder: Path, voice_id: str, missing_ok: bool = False) -> tuple[int, int, int] | None:
    """Which incarnation of an uploaded voice this is: its manifest is written once, when it is added."""
    try:
        st = (folder / MANIFEST).stat()
    except FileNotFoundError:
        if missing_ok:
            return None
        raise VoiceNotFound(f"voice {voice_id!r} not found (GET /api/v1/voices lists the voices)") from None
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
        self.uploads_dir.mkdir(parents=True, exist_ok=True)
        self._lru: OrderedDict[tuple[str, str], VoicePrompt] = OrderedDict()
        self._lru_size = cache_size
        self._lock = threading.Lock()  # the LRU
        self._files_lock = threading.Lock()  # deleting a voice vs. saving a prompt into its folder
        for leftover in self.uploads_dir.glob(".trash-*"):  # a deletion that was interrupted
            shutil.rmtree(leftover)

    # --- listing -----------------------------------------------------------------------------------

    def list(self) -> list[Voice]:
        voices = {v.id: v for v in self._builtin_voices()}
        for v in self._uploaded_voices():
            voices.setdefault(v.id, v)
        return sorted(voices.values(), key=lambda v: (not v.built_in, v.id))

    def get(self, voice_id: str) -> Voice:
        check_voice_id(voice_id)
        for folder, built_in in ((self.builtin_dir / voice_id, True), (self.uploads_dir / voice_id, False)):
            if (folder / MANIFEST).is_file():
                return self._read_voice(folder, built_in)
        raise VoiceNotFound(f"voice {voice_id!r} not found (GET /api/v1/voices lists the voices)")

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
        from .audio import AudioError, load_audio

        if len(data) > self.max_bytes:
            raise AudioTooLarge(f"audio file is {len(data)} bytes; the limit is {self.max_bytes} bytes")
        if not data:
            raise BadAudio("the audio file is empty")
        channels = _channels(data)
        if channels is not None and channels > 2:
            raise BadAudio(f"audio has {channels} channels; send mono or stereo")
        try:
            wav, sr = load_audio(data)  # float32 mono (channels averaged)
        except AudioError as exc:
            raise UnsupportedAudio(f"{exc}; send a WAV, FLAC or OGG file (mono or stereo, 3-20 s of speech)") from None
        seconds = wav.shape[0] / sr
        if seconds < self.min_seconds:
            raise BadAudio(f"audio is {seconds:.2f} s long; send at least {self.min_seconds:g} s of speech")
        if seconds > self.max_seconds:
            raise BadAudio(f"audio is {seconds:.1f} s long; send at most {self.max_seconds:g} s (3-20 s works best)")
        if not np.isfinite(wav).all() or float(np.abs(wav).max()) < 1e-4:
            raise BadAudio("audio is silent (or not finite); send a recording of someone speaking")
        if sr != SAMPLE_RATE:
            wav = _resample(wav, sr)
        return np.clip(wav, -1.0, 1.0).astype(np.float32)

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
        from .audio import write_wav

        check_voice_id(voice_id)
        if (self.builtin_dir / voice_id).exists() or (self.uploads_dir / voice_id).exists():
            raise VoiceExists(f"voice id {voice_id!r} is taken; choose another id or DELETE it first")
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
            prompt.save(staging / f"prompt-{_fingerprint_tag(model.fingerprint)}.safetensors")
            with self._files_lock:
                os.rename(staging, self.uploads_dir / voice_id)  # atomic: the voice appears whole or not at all
                self._remember(voice_id, model.fingerprint, prompt)
        except FileExistsError:
            shutil.rmtree(staging, ignore_errors=True)
            raise VoiceExists(f"voice id {voice_id!r} is taken; choose another id or DELETE it first") from None
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
        with self._files_lock:
            os.rename(self.uploads_dir / voice_id, trash)  # gone from listings at once, atomically
            with self._lock:
                for key in [k for k in self._lru if k[0] == voice_id]:
                    del self._lru[key]
        shutil.rmtree(trash)  # a failure leaves .trash-*, removed at the next start

    # --- prompts -----------------------------------------------------------------------------------

    def cached_prompt(self, voice_id: str, fingerprint: str) -> VoicePrompt | None:
        """The in-memory prompt if there is one (cheap: safe to call on the event loop)."""
        with self._lock:
            prompt = self._lru.get((voice_id, fingerprint))
            if prompt is not None:
                self._lru.move_to_end((voice_id, fingerprint))
            return prompt

    def prompt(self, voice_id: str, model: PromptModel) -> VoicePrompt:
        """The voice's prompt for `model`: memory, else its saved file, else computed and saved."""
        cached = self.cached_prompt(voice_id, model.fingerprint)
        if cached is not None:
            return cached
        voice = self.get(voice_id)
        if not voice.provisioned or voice.audio_path is None:
            raise VoiceNotFound(f"voice {voice_id!r} is not provisioned yet: {voice.setup_hint}")
        folder = (self.cache_dir / voice_id) if voice.built_in else (self.uploads_dir / voice_id)
        identity = None if voice.built_in else _identity(folder, voice_id)
        path = folder / f"prompt-{_fingerprint_tag(model.fingerprint)}.safetensors"
        prompt = None
        if path.is_file():
            try:
                prompt = VoicePrompt.load(path)
            except (OSError, ValueError, KeyError):
                prompt = None  # a damaged file is recomputed below
        computed = prompt is None
        if computed:
            from .audio import load_audio

            wav, sr = load_audio(voice.audio_path)
            if sr != SAMPLE_RATE:
                wav = _resample(wav, sr)
            prompt = model.create_voice_prompt(wav, SAMPLE_RATE, voice.transcript)
        with self._files_lock:
            if identity is not None and _identity(folder, voice_id, missing_ok=True) != identity:
                return prompt  # deleted (or re-created) meanwhile: keep nothing of it
            if computed:
                folder.mkdir(parents=True, exist_ok=True)
                for stale in folder.glob("prompt-*.safetensors"):
                    stale.unlink(missing_ok=True)
                fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".safetensors")
                os.close(fd)
                try:
                    prompt.save(tmp)
                    os.replace(tmp, path)
                finally:
                    Path(tmp).unlink(missing_ok=True)
            self._remember(voice_id, model.fingerprint, prompt)
        return prompt

    def _remember(self, voice_id: str, fingerprint: str, prompt: VoicePrompt) -> None:
        with self._lock:
            self._lru[(voice_id, fingerprint)] = prompt
            self._lru.move_to_end((voice_id, fingerprint))
            while len(self._lru) > self._lru_size:
                self._lru.popitem(last=False)
