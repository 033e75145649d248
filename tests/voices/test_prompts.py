"""PromptCache through the store: memory, then disk, then computed, keyed by the model fingerprint; a real
tiny model's prompt survives the round trip through its file."""

from __future__ import annotations

import shutil

import torch
from voices_helpers import CountingModel

from makima_tts.voices import PromptCache, VoiceStore
from makima_tts.voices.dir_objects import DirectoryObjects
from makima_tts.voices.prompts import prompt_file


def test_prompt_cache_follows_the_model_fingerprint(builtin, tmp_path):
    store = VoiceStore(builtin, tmp_path / "data", cache_size=2)
    model_a, model_b = CountingModel("weights-a"), CountingModel("weights-b")
    store.prompt("narrator", model_a)
    store.prompt("narrator", model_a)
    assert model_a.calls == 1  # memory
    fresh = VoiceStore(builtin, tmp_path / "data", cache_size=2)
    fresh.prompt("narrator", model_a)
    assert model_a.calls == 1  # disk
    fresh.prompt("narrator", model_b)
    assert model_b.calls == 1  # other weights: recomputed
    saved = list((tmp_path / "data" / "cache" / "builtin" / "narrator").glob("prompt-*.safetensors"))
    assert [p.name for p in saved] == [prompt_file("weights-b")]  # the stale prompt was replaced
    assert sorted(p.name for p in (builtin / "narrator").iterdir()) == ["clip.wav", "voice.json", "words.txt"]


def test_the_memory_level_is_a_bounded_lru():
    cache, model = PromptCache(size=2), CountingModel("w")
    prompts = [model.create_voice_prompt(None, 24000, None) for _ in range(3)]
    cache.remember("a", "w", prompts[0])
    cache.remember("b", "w", prompts[1])
    assert cache.cached("a", "w") is prompts[0]  # "a" is now the most recent
    cache.remember("c", "w", prompts[2])
    assert cache.cached("b", "w") is None and cache.cached("a", "w") is prompts[0]
    cache.forget("a")
    assert cache.cached("a", "w") is None and cache.cached("c", "w") is prompts[2]


def test_a_damaged_file_is_recomputed(builtin, tmp_path):
    model = CountingModel("weights-a")
    VoiceStore(builtin, tmp_path / "data").prompt("narrator", model)
    path = tmp_path / "data" / "cache" / "builtin" / "narrator" / prompt_file("weights-a")
    path.write_bytes(b"garbage")
    VoiceStore(builtin, tmp_path / "data").prompt("narrator", model)
    assert model.calls == 2 and path.stat().st_size > 100


def test_not_current_any_more_means_neither_saved_nor_kept(builtin, tmp_path):
    cache, model = PromptCache(), CountingModel("w")
    objects = DirectoryObjects(tmp_path / "store")
    prompt = cache.load_or_compute("narrator", "r1", model, objects=objects, key="voices/narrator/r1/p",
                                   clip=(builtin / "narrator" / "clip.wav").read_bytes, transcript=None,
                                   still_current=lambda: False)
    assert prompt.mode == "xvector" and model.calls == 1
    assert objects.keys("") == [] and cache.cached("narrator", "w") is None


def test_a_prompt_of_another_revision_is_not_used():
    cache, model = PromptCache(), CountingModel("w")
    prompt = model.create_voice_prompt(None, 24000, None)
    cache.remember("erin", "w", prompt, rev="r1")
    assert cache.cached("erin", "w", "r1") is prompt and cache.cached("erin", "w") is prompt
    assert cache.cached("erin", "w", "r2") is None  # re-created on another replica: computed again


def test_a_real_prompt_round_trips_through_its_file(builtin, tmp_path, tiny_tts):
    data = tmp_path / "data"
    first = VoiceStore(builtin, data).prompt("narrator", tiny_tts)  # ICL: the manifest names a transcript
    assert first.mode == "icl" and first.ref_text == "Narrated words." and first.ref_codes.shape[1] == 16
    shutil.copytree(data, tmp_path / "copy")
    again = VoiceStore(builtin, tmp_path / "copy").prompt("narrator", CountingModel(tiny_tts.fingerprint))
    assert torch.equal(again.x_vector, first.x_vector) and torch.equal(again.ref_codes, first.ref_codes)
    assert again.ref_text == first.ref_text
