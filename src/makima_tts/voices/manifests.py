"""`Voice` (one voice's manifest, as read) and where an uploaded voice's objects live in the store.

Layout of the uploaded voices in the object store (`objects.ObjectStore`, shared by every replica):

    voices/<id>/voice.json                              the manifest: created once, conditionally
    voices/<id>/<rev>/reference-<sha256[:32]>.wav       the clip (24 kHz mono), named by its content hash
    voices/<id>/<rev>/prompt-<sha256(fingerprint)[:16]>.safetensors   a derived prompt, one per weights

`rev` is a random token made by the upload, so a voice deleted and made again under the same id never
shares an object with its predecessor. Objects are written before the manifest that names them (a reader
never sees half a voice) and never rewritten. Voices uploaded before revisions existed (no `rev`) keep
their clip and prompts directly in `voices/<id>/`.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import InvalidVoiceId, VoiceExists, VoiceNotFound

VOICE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MANIFEST = "voice.json"
REFERENCE = "reference.wav"
UPLOADS = "voices/"


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
    clip: str | None = None  # built-in: a path under the voices folder; uploaded: an object key
    clip_sha256: str | None = None  # uploaded: checked when the clip is read
    rev: str | None = None  # uploaded: which incarnation of the id
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


def manifest_key(voice_id: str) -> str:
    return f"{UPLOADS}{voice_id}/{MANIFEST}"


def folder_key(voice: Voice) -> str:
    """The prefix of an uploaded voice's own objects (clip, prompts)."""
    return f"{UPLOADS}{voice.id}/{voice.rev}/" if voice.rev else f"{UPLOADS}{voice.id}/"


def uploaded_ids(keys: list[str]) -> list[str]:
    """The voice ids whose manifest is among `keys` (the keys under `voices/`)."""
    ids = []
    for key in keys:
        parts = key.split("/")
        if len(parts) == 3 and parts[2] == MANIFEST and VOICE_ID.fullmatch(parts[1]):
            ids.append(parts[1])
    return ids


def new_manifest(voice_id: str, clip: bytes, *, transcript: str | None, name: str | None,
                 language: str | None) -> tuple[dict, str]:
    """The manifest of a new upload and the key of its clip."""
    rev = secrets.token_hex(8)
    sha = hashlib.sha256(clip).hexdigest()
    meta = {
        "name": (name or "").strip() or voice_id,
        "language": language or None,
        "description": "uploaded voice",
        "rev": rev,
        "audio": f"{rev}/reference-{sha[:32]}.wav",
        "audioSha256": sha,
        "transcriptText": transcript,
        "createdAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return meta, f"{UPLOADS}{voice_id}/{meta['audio']}"


def uploaded_voice(voice_id: str, data: bytes) -> Voice:
    meta = json.loads(data.decode("utf-8"))
    transcript = meta.get("transcriptText")
    return Voice(
        id=voice_id,
        name=meta.get("name", voice_id),
        language=meta.get("language"),
        description=meta.get("description", ""),
        mode="icl" if transcript else "xvector",
        built_in=False,
        created_at=meta.get("createdAt"),
        transcript=transcript,
        clip=f"{UPLOADS}{voice_id}/{meta.get('audio', REFERENCE)}",
        clip_sha256=meta.get("audioSha256"),
        rev=meta.get("rev"),
    )


def builtin_voice(folder: Path) -> Voice:
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
        built_in=True,
        created_at=meta.get("createdAt"),
        transcript=transcript,
        clip=str(audio) if provisioned else None,
        provisioned=provisioned,
        setup_hint=hint,
    )
