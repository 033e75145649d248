"""VoiceStore: the voices a server can speak with, their manifests, uploads and deletion.

Two sources:
- built-in voices, read-only, one folder each under `voices/` with a `voice.json` manifest
  (`name`, `language`, `description`, `audio`, `transcript` file names) and the files it names; a manifest
  whose clip is missing is listed as not provisioned (its `setup` field, if any, says what to do);
- uploaded voices in the object store every replica shares (`objects`: `TTS_DATA_DIR`, a shared volume or
  an S3 bucket; layout in `manifests`). An upload writes its clip and prompt under its own revision, then
  creates the manifest conditionally: of two replicas racing for one id exactly one wins, the other gets
  `VoiceExists`. Every `get` reads the manifest from the store, so a voice made or deleted on any replica
  is seen by every replica on its next use.

Deleting an uploaded voice removes its manifest first (gone for every replica at once), drops its prompts
from memory, then removes its objects (clip, prompts). The prompts derived from the clips are kept by
`prompts.PromptCache` (`self.prompts`): beside an uploaded voice's clip, or in this replica's
`DATA_DIR/cache/builtin/<id>/` for a built-in one. Every method that touches the store or the model is
blocking: call it from a worker thread.

A store whose conditional create is not honoured (`verify_store`) refuses uploads unless
`allow_unconditional` accepts last-writer-wins; see README "Scaling out".
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from ..voice_prompt import VoicePrompt
from .dir_objects import DirectoryObjects
from .errors import VoiceNotFound, VoiceReadOnly, VoiceStoreUnavailable
from .manifests import (
    MANIFEST,
    UPLOADS,
    Voice,
    builtin_voice,
    check_voice_id,
    folder_key,
    manifest_key,
    new_manifest,
    not_found,
    taken,
    uploaded_ids,
    uploaded_voice,
)
from .objects import ObjectStore, probe_conditional_create
from .prompts import SAMPLE_RATE, PromptCache, PromptModel, prompt_file
from .upload import decode_upload

log = logging.getLogger(__name__)

__all__ = ["Voice", "VoiceStore", "check_voice_id"]


class VoiceStore:
    def __init__(
        self,
        builtin_dir: Path,
        data_dir: Path,
        *,
        objects: ObjectStore | None = None,
        allow_unconditional: bool = False,
        cache_size: int = 32,
        min_seconds: float = 1.0,
        max_seconds: float = 30.0,
        max_bytes: int = 10 * 1024 * 1024,
    ):
        self.builtin_dir = Path(builtin_dir)
        self.local = DirectoryObjects(Path(data_dir))  # this replica's own cache (built-in voices' prompts)
        self.objects = objects if objects is not None else self.local
        self.allow_unconditional = allow_unconditional
        self.conditional_writes: bool | None = None  # known once `verify_store` reached the store
        self.min_seconds, self.max_seconds, self.max_bytes = min_seconds, max_seconds, max_bytes
        self.prompts = PromptCache(cache_size)

    # --- the store ---------------------------------------------------------------------------------

    def verify_store(self, replica: str) -> None:
        """Start-up: does the store honour conditional creates? An unreachable store is logged and asked
        again before the first upload; one that ignores them raises `VoiceStoreUnavailable` (unless
        `allow_unconditional`: then a warning, and uploads that race for an id may both succeed)."""
        try:
            self.conditional_writes = probe_conditional_create(self.objects, replica)
        except VoiceStoreUnavailable as exc:
            log.warning("%s; uploaded voices answer 503 until it is back", exc.message)
            return
        if not self.conditional_writes:
            if not self.allow_unconditional:
                raise self._unsafe()
            log.warning("voice store %s ignores conditional writes (If-None-Match): two uploads racing for one"
                        " id may both succeed, the later one wins (TTS_VOICE_STORE_ALLOW_UNCONDITIONAL)",
                        self.objects.where)
        log.info("voice store: %s (conditional writes %s)", self.objects.where,
                 "honoured" if self.conditional_writes else "ignored")

    def _unsafe(self) -> VoiceStoreUnavailable:
        return VoiceStoreUnavailable(
            f"voice store {self.objects.where} ignores conditional writes (a PUT with If-None-Match: * overwrote"
            " an object), so two replicas could overwrite each other's voice; use a store that honours them"
            " (AWS S3, MinIO, Ceph RGW) or set TTS_VOICE_STORE_ALLOW_UNCONDITIONAL=true to accept that")

    def _create_manifest(self, voice_id: str, data: bytes, rev: str) -> bool:
        key = manifest_key(voice_id)
        if self.conditional_writes is None:
            self.verify_store("upload")
        if self.conditional_writes:
            return self.objects.create(key, data)
        if not self.allow_unconditional:
            raise self._unsafe()
        if self.objects.read(key) is not None:  # best effort on a store that ignores If-None-Match
            return False
        self.objects.write(key, data)
        written = self.objects.read(key)
        return written is not None and json.loads(written).get("rev") == rev

    # --- listing -----------------------------------------------------------------------------------

    def list(self) -> list[Voice]:
        voices = {v.id: v for v in self._builtin_voices()}
        for voice_id in uploaded_ids(self.objects.keys(UPLOADS)):
            if voice_id not in voices:
                try:
                    voices[voice_id] = self._uploaded(voice_id)
                except VoiceNotFound:  # deleted since the listing
                    continue
        return sorted(voices.values(), key=lambda v: (not v.built_in, v.id))

    def get(self, voice_id: str) -> Voice:
        """The voice's manifest, read once from where it lives (VoiceNotFound, InvalidVoiceId)."""
        check_voice_id(voice_id)
        if (self.builtin_dir / voice_id / MANIFEST).is_file():
            return builtin_voice(self.builtin_dir / voice_id)
        return self._uploaded(voice_id)

    def _builtin_voices(self) -> list[Voice]:
        if not self.builtin_dir.is_dir():
            return []
        return [builtin_voice(d) for d in sorted(self.builtin_dir.iterdir()) if (d / MANIFEST).is_file()]

    def _uploaded(self, voice_id: str) -> Voice:
        data = self.objects.read(manifest_key(voice_id))
        if data is None:
            raise not_found(voice_id)
        return uploaded_voice(voice_id, data)

    def clip(self, voice: Voice) -> bytes:
        """The voice's reference clip (a WAV; an uploaded one is checked against its content hash)."""
        if voice.clip is None:
            raise VoiceNotFound(f"voice {voice.id!r} is not provisioned yet: {voice.setup_hint}")
        if voice.built_in:
            return Path(voice.clip).read_bytes()
        data = self.objects.read(voice.clip)
        if data is None:
            raise not_found(voice.id)  # deleted meanwhile
        if voice.clip_sha256 and hashlib.sha256(data).hexdigest() != voice.clip_sha256:
            raise VoiceStoreUnavailable(f"voice store {self.objects.where}: {voice.clip} does not match its hash")
        return data

    # --- uploads -----------------------------------------------------------------------------------

    def decode_upload(self, data: bytes) -> np.ndarray:
        """Bytes of an uploaded clip → float32 mono at 24 kHz, or a `BadAudio` saying what to fix."""
        return decode_upload(data, min_seconds=self.min_seconds, max_seconds=self.max_seconds, max_bytes=self.max_bytes)

    def check_free(self, voice_id: str) -> None:
        """Raise `VoiceExists` (or `InvalidVoiceId`) unless a new voice may take `voice_id`."""
        check_voice_id(voice_id)
        if (self.builtin_dir / voice_id).exists() or self.objects.read(manifest_key(voice_id)) is not None:
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
        from ..audio import wav_bytes

        self.check_free(voice_id)
        transcript = (transcript or "").strip() or None
        prompt = model.create_voice_prompt(wav, SAMPLE_RATE, transcript)
        clip = wav_bytes(wav, SAMPLE_RATE)
        meta, clip_key = new_manifest(voice_id, clip, transcript=transcript, name=name, language=language)
        voice = uploaded_voice(voice_id, json.dumps(meta).encode())
        prompt_key = folder_key(voice) + prompt_file(model.fingerprint)
        written = [clip_key, prompt_key]
        try:
            self.objects.create(clip_key, clip)
            self.objects.create(prompt_key, prompt.to_bytes())
            with self.prompts.files_lock:
                if not self._create_manifest(voice_id, json.dumps(meta, indent=2).encode(), meta["rev"]):
                    raise taken(voice_id)
                self.prompts.remember(voice_id, model.fingerprint, prompt, voice.rev)
        except BaseException:
            for key in written:  # this revision's objects: nobody else names them
                try:
                    self.objects.delete(key)
                except VoiceStoreUnavailable:
                    break  # the store is gone: unnamed objects, never read
            raise
        return voice

    def delete(self, voice_id: str) -> None:
        voice = self.get(voice_id)
        if voice.built_in:
            raise VoiceReadOnly(f"voice {voice_id!r} is built in and cannot be deleted")
        with self.prompts.files_lock:
            self.objects.delete(manifest_key(voice_id))  # gone for every replica at once
            self.prompts.forget(voice_id)
        folder = folder_key(voice)
        for key in self.objects.keys(folder):
            if voice.rev is not None or (key.count("/") == 2 and not key.endswith(MANIFEST)):  # legacy: its files
                self.objects.delete(key)

    # --- prompts -----------------------------------------------------------------------------------

    def cached_prompt(self, voice_id: str, fingerprint: str) -> VoicePrompt | None:
        """The in-memory prompt if there is one (cheap: safe to call on the event loop)."""
        return self.prompts.cached(voice_id, fingerprint)

    def prompt(self, voice_id: str, model: PromptModel) -> VoicePrompt:
        """The voice's prompt for `model`: memory, else its saved object, else computed and saved."""
        return self.prompt_for(self.get(voice_id), model)

    def prompt_for(self, voice: Voice, model: PromptModel) -> VoicePrompt:
        """`prompt` for a voice whose manifest was already read (`get`): reads no manifest again unless it
        computes a prompt (then it checks the voice is still there before keeping it)."""
        if not voice.provisioned or voice.clip is None:
            raise VoiceNotFound(f"voice {voice.id!r} is not provisioned yet: {voice.setup_hint}")
        name = prompt_file(model.fingerprint)
        if voice.built_in:
            folder = f"cache/builtin/{voice.id}/"
            return self.prompts.load_or_compute(
                voice.id, None, model, objects=self.local, key=folder + name, clip=lambda: self.clip(voice),
                transcript=voice.transcript, still_current=lambda: True,
                stale=lambda: [k for k in self.local.keys(folder) if k != folder + name])

        def still_current() -> bool:
            data = self.objects.read(manifest_key(voice.id))
            return data is not None and uploaded_voice(voice.id, data).rev == voice.rev

        return self.prompts.load_or_compute(
            voice.id, voice.rev, model, objects=self.objects, key=folder_key(voice) + name,
            clip=lambda: self.clip(voice), transcript=voice.transcript, still_current=still_current)
