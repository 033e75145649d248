"""Checkpoint resolution, strict loading and tokenizer choices."""

import json
import shutil

import pytest
from safetensors.torch import load_file, save_file

from makima_tts.hub import ModelNotFoundError, resolve
from makima_tts.model.tts import TTSModel
from makima_tts.text import TextTokenizer, official_uses_patched_regex
from makima_tts.weights import WeightsError


def test_missing_files_are_named(tiny_base_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_base_dir, broken)
    (broken / "speech_tokenizer" / "model.safetensors").unlink()
    with pytest.raises(ModelNotFoundError, match="speech_tokenizer/model.safetensors"):
        resolve(str(broken))


def test_bad_source_strings(tmp_path):
    with pytest.raises(ModelNotFoundError, match="neither an existing directory nor a Hub id"):
        resolve(str(tmp_path / "nope"))
    with pytest.raises(ModelNotFoundError, match="neither"):
        resolve("not/a/hub/id")


def test_offline_hub_id_explains_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    import importlib

    import huggingface_hub.constants as constants

    importlib.reload(constants)
    try:
        with pytest.raises(ModelNotFoundError, match="huggingface-cli download"):
            resolve("Qwen/Qwen3-TTS-12Hz-0.6B-Base")
    finally:
        monkeypatch.undo()
        importlib.reload(constants)


def test_strict_load_lists_missing_and_unexpected(tiny_base_dir, tmp_path):
    broken = tmp_path / "strict"
    shutil.copytree(tiny_base_dir, broken)
    state = load_file(str(broken / "model.safetensors"))
    state.pop("talker.codec_head.weight")
    state["talker.surprise.weight"] = state["talker.model.norm.weight"].clone()
    save_file(state, str(broken / "model.safetensors"))
    with pytest.raises(WeightsError, match="talker.surprise.weight"):
        TTSModel.load(broken)
    state.pop("talker.surprise.weight")
    save_file(state, str(broken / "model.safetensors"))
    with pytest.raises(WeightsError, match="missing keys.*codec_head.weight"):
        TTSModel.load(broken)


def test_bfloat16_load(tiny_base_dir):
    import torch

    tts = TTSModel.load(tiny_base_dir, dtype="bfloat16")
    assert tts.talker.codec_embedding.weight.dtype == torch.bfloat16
    assert tts.talker.head.packed is not None  # bf16 on CPU: weights pre-packed for oneDNN
    with pytest.raises(ValueError, match="dtype must be one of"):
        TTSModel.load(tiny_base_dir, dtype="int8")


def test_regex_rule_follows_the_official_pipeline():
    assert official_uses_patched_regex(151643, True, "4.57.3")
    assert official_uses_patched_regex(151643, True, None)
    assert not official_uses_patched_regex(151643, False, "4.57.3")  # loaded by Hub id
    assert not official_uses_patched_regex(151643, True, "4.57.1")
    assert not official_uses_patched_regex(151643, True, "5.0.0")
    assert not official_uses_patched_regex(400, True, "4.57.3")  # small vocabularies are left alone


def test_tokenizer_from_vocab_and_merges_matches_tokenizer_json(tiny_base_dir, tmp_path):
    slim = tmp_path / "slim"
    slim.mkdir()
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json"):
        shutil.copy(tiny_base_dir / name, slim / name)
    text = "Hello world. The quick brown fox, 0123!"
    full = TextTokenizer.from_dir(tiny_base_dir)
    rebuilt = TextTokenizer.from_dir(slim)
    assert full.assistant_ids(text) == rebuilt.assistant_ids(text)
    config = json.loads((tiny_base_dir / "tokenizer_config.json").read_text())
    im_start = next(int(i) for i, t in config["added_tokens_decoder"].items() if t["content"] == "<|im_start|>")
    assert full.assistant_ids(text)[0] == im_start


def test_patched_regex_splits_case_changes(tiny_base_dir):
    patched = TextTokenizer.from_dir(tiny_base_dir, regex="patched")
    plain = TextTokenizer.from_dir(tiny_base_dir, regex="qwen2")
    assert patched.use_patched_regex and not plain.use_patched_regex

    def pieces(tok, text):
        return [piece for piece, _ in tok._tok.pre_tokenizer.pre_tokenize_str(text)]

    assert pieces(patched, "iPhone McDonald") == ["i", "Phone", "ĠMc", "Donald"]
    assert pieces(plain, "iPhone McDonald") == ["iPhone", "ĠMcDonald"]
    assert patched.encode("hello world, 42 times") == plain.encode("hello world, 42 times")
