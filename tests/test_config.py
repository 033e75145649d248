"""config.py: parsing the checkpoint JSONs into frozen dataclasses (defaults, unknown keys, tuples)."""

import json
from dataclasses import FrozenInstanceError, fields

import pytest

from makima_tts.config import GenerationDefaults, SamplingParams, load_model_config, parse_model_config
from makima_tts.engine import types

OFFICIAL_SAMPLING = dict(do_sample=True, top_k=50, top_p=1.0, temperature=0.9, repetition_penalty=1.05,
                         subtalker_dosample=True, subtalker_top_k=50, subtalker_top_p=1.0, subtalker_temperature=0.9)


def test_official_sampling_defaults_have_one_source():
    assert types.SamplingParams is SamplingParams  # the engine's request type is config's
    assert {f.name: getattr(SamplingParams(), f.name) for f in fields(SamplingParams)} == OFFICIAL_SAMPLING
    assert GenerationDefaults() == GenerationDefaults(SamplingParams(), 2048)


def test_greedy_turns_off_both_draws_only():
    params = SamplingParams(top_k=7, temperature=0.5)
    assert params.greedy() == SamplingParams(do_sample=False, subtalker_dosample=False, top_k=7, temperature=0.5)
    gen = GenerationDefaults(SamplingParams(top_p=0.8))
    assert SamplingParams.from_defaults(gen) is gen.sampling
    assert SamplingParams.from_defaults(gen, greedy=True) == SamplingParams(top_p=0.8).greedy()


def test_empty_files_give_the_official_defaults():
    cfg = parse_model_config({}, {}, {})
    assert cfg.tts_model_type == "base" and cfg.tts_model_size == "0b6"
    t = cfg.talker
    assert (t.vocab_size, t.num_code_groups, t.hidden_size, t.num_hidden_layers, t.num_attention_heads) == (
        3072, 32, 1024, 20, 16)
    assert t.num_key_value_heads == 2 and t.head_dim == 64 and t.codec_eos_token_id == 2150
    cp = cfg.code_predictor
    assert (cp.vocab_size, cp.hidden_size, cp.num_hidden_layers, cp.head_dim, cp.num_code_groups) == (
        2048, 1024, 5, 128, 32)
    assert cfg.codec.decoder.codebook_size == 2048 and cfg.codec.decoder.sliding_window == 72
    assert cfg.generation == GenerationDefaults()
    assert cfg.speaker_encoder is not None  # Base models clone voices


def test_values_are_read_and_unknown_keys_ignored():
    raw = {"tts_model_type": "custom_voice", "tts_model_size": "1b7", "not_a_field": 1,
           "talker_config": {"hidden_size": 64, "num_attention_heads": 4, "mystery": True,
                             "spk_id": {"serena": 3066}, "code_predictor_config": {"num_hidden_layers": 2, "x": 0}}}
    generation = {"top_k": 30, "temperature": 0.7, "max_new_tokens": 99, "eos_token_id": 2150, "extra": "y"}
    codec = {"decoder_config": {"codebook_size": 1024, "unknown": 3}, "encoder_config": {"anything": 1},
             "output_sample_rate": 24000, "surprise": 2}
    cfg = parse_model_config(raw, generation, codec)
    assert cfg.talker.hidden_size == 64 and cfg.talker.head_dim == 16  # derived: hidden / heads
    assert cfg.talker.spk_id == {"serena": 3066} and cfg.speakers == ["serena"]
    assert cfg.code_predictor.num_hidden_layers == 2
    assert cfg.generation == GenerationDefaults(SamplingParams(top_k=30, temperature=0.7), 99)
    assert cfg.codec.decoder.codebook_size == 1024 and cfg.codec.encoder == {"anything": 1}
    assert cfg.speaker_encoder is None  # only Base models have one
    assert cfg.supports_instruct  # CustomVoice 1.7B


def test_lists_become_tuples():
    cfg = parse_model_config({"speaker_encoder_config": {"enc_channels": [8, 8, 24]}}, {},
                             {"decoder_config": {"upsample_rates": [2, 3], "upsampling_ratios": [2]}})
    assert cfg.speaker_encoder.enc_channels == (8, 8, 24)
    assert cfg.codec.decoder.upsample_rates == (2, 3) and cfg.codec.decoder.upsampling_ratios == (2,)
    hash(cfg.codec.decoder)  # frozen and hashable


def test_configs_are_frozen():
    with pytest.raises(FrozenInstanceError):
        parse_model_config({}, {}, {}).generation.sampling.top_k = 3


def test_languages_and_instruct_support():
    cfg = parse_model_config({"talker_config": {"codec_language_id": {"english": 1, "chinese": 2,
                                                                        "beijing_dialect": 3}}}, {}, {})
    assert cfg.languages == ["chinese", "english", "auto"]  # no dialects, plus auto
    assert not cfg.supports_instruct  # Base
    assert parse_model_config({"tts_model_type": "voice_design"}, {}, {}).supports_instruct
    assert not parse_model_config({"tts_model_type": "custom_voice", "tts_model_size": "0b6"}, {}, {}).supports_instruct


def test_load_model_config_reads_the_three_files(tmp_path):
    (tmp_path / "speech_tokenizer").mkdir()
    (tmp_path / "config.json").write_text(json.dumps({"tts_model_type": "voice_design"}))
    (tmp_path / "speech_tokenizer" / "config.json").write_text(json.dumps({"decoder_config": {"head_dim": 32}}))
    cfg = load_model_config(tmp_path)  # no generation_config.json: official defaults
    assert cfg.tts_model_type == "voice_design" and cfg.codec.decoder.head_dim == 32
    assert cfg.generation == GenerationDefaults()
    (tmp_path / "generation_config.json").write_text(json.dumps({"do_sample": False}))
    assert load_model_config(tmp_path).generation.sampling == SamplingParams(do_sample=False)
