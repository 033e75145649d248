"""VoiceStore: manifests (built-in and uploaded), upload decoding, atomic adds, and deletes that leave
nothing of the voice behind (in the store or in memory), even with a prompt being computed meanwhile; the
voices uploaded before revisions existed still speak and delete. Several replicas on one store:
test_shared_store.py."""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from voices_helpers import CountingModel, GatedModel

from makima_tts.voices import (
    AudioTooLarge,
    BadAudio,
    InvalidVoiceId,
    UnsupportedAudio,
    VoiceExists,
    VoiceNotFound,
    VoiceReadOnly,
    VoiceStore,
)
from makima_tts.voices.prompts import prompt_file


def tree(root) -> set[str]:
    return {os.path.join(d, f) for d, _, files in os.walk(root) for f in files}


def encoded(wav: np.ndarray, sr: int, fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wav, sr, format=fmt, subtype="PCM_16")
    return buf.getvalue()


def test_manifests(builtin, tmp_path):
    store = VoiceStore(builtin, tmp_path / "data")
    narrator = store.get("narrator")
    assert (narrator.name, narrator.language, narrator.mode) == ("Narrator", "English", "icl")
    assert narrator.transcript == "Narrated words." and narrator.clip == str(builtin / "narrator" / "clip.wav")
    assert narrator.built_in and narrator.provisioned and narrator.setup_hint is None
    pending = store.get("pending")
    assert not pending.provisioned and pending.clip is None
    assert pending.setup_hint == "add builtin/pending/reference.wav, then restart"
    assert [v.id for v in store.list()] == ["narrator", "pending"]
    assert store.get("narrator").to_json("narrator")["isDefault"] is True
    with pytest.raises(VoiceNotFound, match="GET /api/v1/voices"):
        store.get("ghost")
    with pytest.raises(InvalidVoiceId, match="invalid voice id"):
        store.get("../narrator")


def test_a_missing_builtin_folder_lists_only_uploads(tmp_path, wav):
    store = VoiceStore(tmp_path / "nowhere", tmp_path / "data")
    assert store.list() == []
    store.add("solo", wav, model=CountingModel("w"))
    assert [v.id for v in store.list()] == ["solo"]


def test_add_writes_the_voice_whole(builtin, tmp_path, wav):
    data = tmp_path / "data"
    store, model = VoiceStore(builtin, data), CountingModel("weights-a")
    voice = store.add("alice", wav, model=model, transcript="  Hello world. ", name=" Alice ", language="english")
    assert (voice.id, voice.name, voice.mode, voice.transcript, voice.built_in) == (
        "alice", "Alice", "icl", "Hello world.", False)
    assert voice.created_at and voice.language == "english"
    folder = data / "voices" / "alice"
    manifest = json.loads((folder / "voice.json").read_text())
    assert manifest["transcriptText"] == "Hello world." and manifest["rev"] == voice.rev
    clip_bytes = (folder / manifest["audio"]).read_bytes()
    assert manifest["audio"] == f"{voice.rev}/reference-{hashlib.sha256(clip_bytes).hexdigest()[:32]}.wav"
    assert {p.name for p in (folder / voice.rev).iterdir()} == {prompt_file("weights-a"), Path(manifest["audio"]).name}
    saved, sr = sf.read(io.BytesIO(store.clip(voice)), dtype="float32")
    assert sr == 24000 and np.abs(saved - wav).max() < 1e-3
    assert not [p for p in tree(data) if os.path.basename(p).startswith(".")]  # no staging left
    assert store.cached_prompt("alice", "weights-a") is not None and model.calls == 1
    assert store.prompt("alice", model) is store.cached_prompt("alice", "weights-a") and model.calls == 1
    assert store.add("bob", wav, model=model).mode == "xvector"
    for taken in ("alice", "narrator", "pending"):
        with pytest.raises(VoiceExists, match="is taken"):
            store.add(taken, wav, model=model)
        with pytest.raises(VoiceExists):
            store.check_free(taken)
    with pytest.raises(InvalidVoiceId):
        store.check_free("Alice")
    store.check_free("carol")


def test_decode_upload(builtin, tmp_path, wav):
    store = VoiceStore(builtin, tmp_path / "data", min_seconds=1.0, max_seconds=3.0, max_bytes=400_000)
    stereo = np.stack([wav[::3], wav[::3]], axis=1)
    out = store.decode_upload(encoded(stereo, 8000))
    assert out.dtype == np.float32 and out.ndim == 1 and abs(out.size - 48000) <= 1  # mono, 24 kHz
    assert store.decode_upload(encoded(wav, 24000, "FLAC")).size == 48000
    cases = [
        (b"", BadAudio, "empty"),
        (b"x" * 400_001, AudioTooLarge, "limit is 400000 bytes"),
        (b"not audio" * 20, UnsupportedAudio, "WAV, FLAC or OGG"),
        (encoded(wav[:12000], 24000), BadAudio, "at least 1 s"),
        (encoded(np.tile(wav, 2), 24000), BadAudio, "at most 3 s"),
        (encoded(np.zeros(48000, np.float32), 24000), BadAudio, "silent"),
        (encoded(np.stack([wav] * 3, axis=1), 24000), BadAudio, "3 channels"),
    ]
    for data, error, message in cases:
        with pytest.raises(error, match=message):
            store.decode_upload(data)


def test_delete_removes_everything_of_the_voice(builtin, tmp_path, wav):
    data = tmp_path / "data"
    store = VoiceStore(builtin, data)
    before = tree(data)
    store.add("carol", wav, model=CountingModel("weights-a"), transcript="Personal words.")
    store.prompt("carol", CountingModel("weights-b"))  # a second fingerprint in memory
    store.delete("carol")
    assert tree(data) == before
    assert store.cached_prompt("carol", "weights-a") is None and store.cached_prompt("carol", "weights-b") is None
    with pytest.raises(VoiceNotFound):
        store.delete("carol")
    with pytest.raises(VoiceReadOnly, match="built in"):
        store.delete("narrator")


def test_a_voice_uploaded_before_revisions_still_speaks_and_deletes(builtin, tmp_path, wav):
    """The layout of earlier releases: clip, manifest and prompts side by side in `voices/<id>/`."""
    from makima_tts.audio import write_wav

    folder = tmp_path / "data" / "voices" / "old"
    folder.mkdir(parents=True)
    write_wav(folder / "reference.wav", wav, 24000)
    (folder / "voice.json").write_text(json.dumps({"name": "Old", "audio": "reference.wav",
                                                   "transcriptText": "Old words.", "createdAt": "2026-01-01T00:00:00Z"}))
    store, model = VoiceStore(builtin, tmp_path / "data"), CountingModel("weights-a")
    assert [v.id for v in store.list()] == ["narrator", "pending", "old"]
    assert store.prompt("old", model).ref_text == "Old words." and model.calls == 1
    assert (folder / prompt_file("weights-a")).is_file()
    store.delete("old")
    assert not folder.exists()


def test_a_prompt_computed_while_its_voice_is_deleted_is_not_kept(builtin, tmp_path, wav):
    store = VoiceStore(builtin, tmp_path / "data")
    store.add("dave", wav, model=CountingModel("weights-a"), transcript="Dave's words.")
    before_voice = tree(tmp_path / "data")
    gated = GatedModel("weights-b")  # other weights: the prompt must be computed again
    worker = threading.Thread(target=store.prompt, args=("dave", gated))
    worker.start()
    assert gated.entered.wait(60)
    store.delete("dave")
    gated.gate.set()
    worker.join(60)
    assert not any("dave" in p for p in tree(tmp_path / "data"))
    assert before_voice and store.cached_prompt("dave", "weights-a") is None
    assert store.cached_prompt("dave", "weights-b") is None


def test_a_prompt_for_a_voice_recreated_meanwhile_is_not_kept(builtin, tmp_path, wav):
    store = VoiceStore(builtin, tmp_path / "data")
    store.add("erin", wav, model=CountingModel("weights-a"))
    gated = GatedModel("weights-b")
    worker = threading.Thread(target=store.prompt, args=("erin", gated))
    worker.start()
    assert gated.entered.wait(60)
    store.delete("erin")
    store.add("erin", wav, model=CountingModel("weights-a"), transcript="A new Erin.")
    gated.gate.set()
    worker.join(60)
    assert store.cached_prompt("erin", "weights-b") is None
    assert len(list((tmp_path / "data" / "voices" / "erin").rglob("prompt-*"))) == 1  # the new one's
