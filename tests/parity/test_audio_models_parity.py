"""Audio-side models against the official outputs in tests/fixtures/parity (fp32, as recorded).

Codec decoder (whole and frame-by-frame, ICL priming included), codec encoder (reference codes),
resampling of a 16 kHz reference, log-mel front end and x-vector.
"""

import functools

import numpy as np
import pytest
import torch
from fixtures import array_keys, checkpoint_dir, load_array, load_cases, load_manifest
from safetensors.torch import load_file

from makima_tts.audio import resample
from makima_tts.config import load_model_config
from makima_tts.model.codec import CodecDecoder
from makima_tts.model.codec_encoder import CodecEncoder
from makima_tts.model.speaker import SpeakerEncoder, mel_spectrogram
from makima_tts.weights import load_strict


def _strip(sd, prefix):
    return {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}


@functools.cache
def _models():
    root = checkpoint_dir("base")
    cfg = load_model_config(root)
    codec_sd = load_file(str(root / "speech_tokenizer" / "model.safetensors"))
    main_sd = load_file(str(root / "model.safetensors"))
    f32 = torch.float32  # the official outputs were recorded with dtype=float32
    decoder, encoder = CodecDecoder(cfg.codec.decoder), CodecEncoder(cfg.codec)
    speaker = SpeakerEncoder(cfg.speaker_encoder)
    load_strict(decoder, _strip(codec_sd, "decoder."), "codec decoder", f32)
    load_strict(encoder.mimi, _strip(codec_sd, "encoder."), "codec encoder", f32)
    load_strict(speaker, _strip(main_sd, "speaker_encoder."), "speaker encoder", f32)
    return decoder.eval(), encoder.eval(), speaker.eval()


def _reference_24k(key):
    sr = load_manifest()["references"][key]["sample_rate"]
    audio = load_array(f"{key}/audio")
    return audio if sr == 24000 else resample(audio, sr, 24000)


CODEC_KEYS = [k.split("/")[1][len("codes") :] for k in array_keys() if k.startswith("codec/codes")]


@pytest.mark.parametrize("frames", CODEC_KEYS)
def test_codec_decode_matches_official(frames):
    codec = _models()[0]
    codes = torch.from_numpy(load_array(f"codec/codes{frames}")).T[None]  # [1, 16, T]
    official = torch.from_numpy(load_array(f"codec/wav{frames}"))
    assert official.abs().max() > 0.05  # a real signal, not silence
    torch.testing.assert_close(codec.decode(codes)[0], official, atol=1e-5, rtol=0)
    state = codec.new_state(1)
    streamed = torch.cat([codec.decode_step(c, state) for c in codes.split(1, dim=2)], dim=1)[0]
    torch.testing.assert_close(streamed, official, atol=1e-5, rtol=0)


@pytest.mark.parametrize("case", [c for c in load_cases() if f"{c['name']}/wav" in array_keys()], ids=lambda c: c["name"])
def test_generated_audio_matches_official_decode(case):
    """Each case's official audio from its codes; ICL: the reference codes primed, as ref ++ codes."""
    codec = _models()[0]
    codes = torch.from_numpy(load_array(f"{case['name']}/codes")).T[None]
    official = torch.from_numpy(load_array(f"{case['name']}/wav"))
    state = codec.new_state(1)
    skip = 0
    if case.get("ref_frames"):  # ICL: official decodes ref ++ codes and cuts at a float proportion
        ref = torch.from_numpy(load_array(f"{case['ref_audio']}/ref_codes"))
        assert ref.shape[0] == case["ref_frames"]
        state.copy_row_from(0, codec.prime(ref), 0)
        skip = case["ref_frames"] * 1920 - case["icl_cut_samples"]  # official keeps `skip` earlier samples
        assert 0 <= skip <= 1
    streamed = torch.cat([codec.decode_step(c, state) for c in codes.split(3, dim=2)], dim=1)[0]
    assert official.shape[0] == streamed.shape[0] + skip
    torch.testing.assert_close(streamed, official[skip:], atol=1e-5, rtol=0)


@pytest.mark.parametrize("key", ["ref24", "ref16"])
def test_reference_codes_match_official(key):
    if key != "ref24":  # the official resamples with librosa (soxr HQ) first
        np.testing.assert_allclose(_reference_24k(key), load_array(f"{key}/audio_24k"), atol=1e-6, rtol=0)
    codes = _models()[1].encode(_reference_24k(key))
    official = load_array(f"{key}/ref_codes")
    assert len(np.unique(official)) > 50  # the random codebooks make varied codes
    np.testing.assert_array_equal(codes.numpy(), official)


def test_mel_matches_official():
    mel = mel_spectrogram(load_array("ref24/audio"))[0]
    torch.testing.assert_close(mel, torch.from_numpy(load_array("ref24/mel")), atol=1e-5, rtol=0)


@pytest.mark.parametrize("key", ["ref24", "ref16"])
def test_xvector_matches_official(key):
    official = torch.from_numpy(load_array(f"{key}/xvector"))
    assert official.abs().max() > 0.1
    torch.testing.assert_close(_models()[2].embed(_reference_24k(key)), official, atol=1e-5, rtol=1e-5)
