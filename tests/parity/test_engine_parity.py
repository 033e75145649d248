"""Our engine against outputs of the official qwen-tts package (committed fixtures, see fixtures/README.md).

Every official case is replayed through the real engine: the same checkpoint, text, voice, language,
text mode and sampling settings (greedy or seeded). Codes must be identical and the waveform within
1e-4 (fp32). Intermediates (token ids, prompt rows, prefill logits, code-predictor logits) are checked
too, so a failure points at the stage that drifted.
"""

import functools

import numpy as np
import pytest
import torch
from fixtures import checkpoint_dir, load_array, load_cases

from makima_tts.engine.engine import Engine
from makima_tts.engine.prompt import build_prompt
from makima_tts.engine.types import SamplingParams, SpeechRequest
from makima_tts.model.kv_cache import KVCache
from makima_tts.model.tts import TTSModel

CASES = load_cases()
SAMPLING_KEYS = ("do_sample", "top_k", "top_p", "temperature", "repetition_penalty", "subtalker_dosample",
                 "subtalker_top_k", "subtalker_top_p", "subtalker_temperature")


@functools.cache
def model(checkpoint: str) -> TTSModel:
    return TTSModel.load(checkpoint_dir(checkpoint))


@functools.cache
def engine(checkpoint: str) -> Engine:
    return Engine(model(checkpoint), max_streams=2)


@functools.cache
def voice(checkpoint: str, ref: str, ref_text: str | None):
    sr = next(c["ref_sample_rate"] for c in CASES if c["ref_audio"] == ref)
    return model(checkpoint).create_voice_prompt(load_array(f"{ref}/audio"), sr, ref_text)


def request_for(case: dict) -> SpeechRequest:
    gen = case["resolved_gen"]
    no_eos = gen.get("eos_token_id") == -1
    clone = case["api"] == "voice_clone"
    ref_text = None if case["x_vector_only_mode"] else case["ref_text"]
    return SpeechRequest(
        text=case["text"],
        language=case["language"],
        voice=voice(case["checkpoint"], case["ref_audio"], ref_text) if clone else None,
        speaker=case["speaker"],
        instruct=case["instruct"],
        text_mode="non_streaming" if case["non_streaming_mode"] else "streaming",
        sampling=SamplingParams(**{k: gen[k] for k in SAMPLING_KEYS}),
        seed=case["seed"],
        max_frames=gen["max_new_tokens"] - 1,  # the official returns max_new_tokens - 1 frames at most
        stop_on_eos=not no_eos,
    )


def synthesize(case: dict):
    *frames, event = engine(case["checkpoint"]).generate(request_for(case), timeout=300)
    return frames, event


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_codes_and_waveform_match_official(case):
    frames, done = synthesize(case)
    assert done.error is None
    expected_codes = load_array(f"{case['name']}/codes")
    codes = np.stack([f.codes for f in frames])
    assert codes.shape == expected_codes.shape == (case["frames"], 16)
    np.testing.assert_array_equal(codes, expected_codes)
    ended_by_eos = case["frames"] < case["resolved_gen"]["max_new_tokens"] - 1
    assert done.truncated == (not ended_by_eos)

    ours = np.concatenate([f.audio for f in frames])
    official = load_array(f"{case['name']}/wav")
    extra = 0
    if case["api"] == "voice_clone" and not case["x_vector_only_mode"]:
        # the official cuts the reference audio at int(ref / total * samples), which can keep one more sample
        ref_len = voice(case["checkpoint"], case["ref_audio"], case["ref_text"]).ref_codes.shape[0]
        total = ref_len + len(frames)
        extra = ref_len * 1920 - int(ref_len / total * (total * 1920))
    assert len(official) == len(ours) + extra
    np.testing.assert_allclose(ours, official[extra:], atol=1e-4, rtol=0)


def _prompt(case):
    tts = model(case["checkpoint"])
    with torch.inference_mode():
        return tts, build_prompt(request_for(case), tts.config, tts.tokenizer, tts.talker, tts.code_predictor)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_token_ids_and_prompt_rows_match_official(case):
    tts, prompt = _prompt(case)
    assert tts.tokenizer.assistant_ids(case["text"]) == load_array(f"{case['name']}/input_ids").reshape(-1).tolist()
    expected = load_array(f"{case['name']}/inputs_embeds")
    trailing = load_array(f"{case['name']}/trailing_text_hidden")
    assert prompt.embeds.shape[1] == case["prompt_rows"]
    np.testing.assert_allclose(prompt.embeds[0].numpy(), expected.reshape(prompt.embeds.shape[1:]), atol=1e-5)
    rows = prompt.feed.closed_rows()  # embedded one token at a time: within 1e-6 of the official batch
    np.testing.assert_allclose(rows.numpy(), trailing.reshape(rows.shape), atol=1e-5)


def _talker_prefill(tts, prompt):
    length = prompt.embeds.shape[1]
    cfg = tts.config.talker
    cache = KVCache(cfg.num_hidden_layers, 1, cfg.num_key_value_heads, cfg.head_dim, length, "cpu", tts.dtype)
    with torch.inference_mode():
        return tts.talker(prompt.embeds, torch.arange(length)[None], cache.view(slice(0, 1), length), 0, None)


@pytest.mark.parametrize("case", [c for c in CASES if c["seed"] is None], ids=lambda c: c["name"])
def test_prefill_logits_match_official(case):
    tts, prompt = _prompt(case)
    hidden = _talker_prefill(tts, prompt)
    logits = tts.talker.logits(hidden[:, -1])[0].numpy()
    np.testing.assert_allclose(logits, load_array(f"{case['name']}/prefill_logits").reshape(-1), atol=1e-4)


@pytest.mark.parametrize("name", ["xvec_stream_greedy", "cv_serena_greedy"])
def test_code_predictor_logits_match_official(name):
    case = next(c for c in CASES if c["name"] == name)
    tts, prompt = _prompt(case)
    cp, cfg = tts.code_predictor, tts.config.code_predictor
    frame = torch.from_numpy(load_array(f"{name}/codes")[0])
    expected = load_array(f"{name}/cp_logits_frame0").reshape(15, -1)
    past_hidden = _talker_prefill(tts, prompt)[:, -1:]
    cache = KVCache(cfg.num_hidden_layers, 1, cfg.num_key_value_heads, cfg.head_dim, 16, "cpu", tts.dtype)
    with torch.inference_mode():
        start = torch.cat((past_hidden, tts.talker.codec_embedding(frame[None, :1])), dim=1)
        hidden = cp(start, 0, cache.view(slice(0, 1), 2))
        for group in range(1, 16):
            if group > 1:
                emb = cp.codec_embedding[group - 2](frame[None, group - 1 : group])
                hidden = cp(emb, group, cache.view(slice(0, 1), group + 1))
            np.testing.assert_allclose(cp.logits(hidden[:, -1], group)[0].numpy(), expected[group - 1], atol=1e-4)
