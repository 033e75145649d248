"""audio.py: loading and its errors, one-shot and streaming resampling, PCM and WAV encoding."""

import io
import math
import struct

import numpy as np
import pytest
import soundfile as sf
import soxr

from makima_tts.audio import (
    AudioError,
    PcmStream,
    StreamingResampler,
    encode_pcm,
    load_audio,
    resample,
    wav_bytes,
    wav_header,
    write_wav,
)


def sine(freq, sr, seconds):
    t = np.arange(int(round(sr * seconds))) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def encoded(data, sr, fmt="WAV", subtype=None):
    buf = io.BytesIO()
    sf.write(buf, data, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


# ------------------------------------------------------------------ loading
def test_load_mono_and_stereo_downmix(tmp_path):
    rng = np.random.default_rng(0)
    stereo = np.clip(0.3 * rng.standard_normal((3000, 2)), -0.9, 0.9).astype(np.float32)
    wav, sr = load_audio(encoded(stereo, 22050, subtype="FLOAT"))
    assert sr == 22050 and wav.dtype == np.float32 and wav.shape == (3000,)
    np.testing.assert_array_equal(wav, stereo.mean(axis=-1))  # channel average, as the official loader
    path = tmp_path / "mono.flac"
    sf.write(path, stereo[:, 0], 16000, subtype="PCM_16")
    wav, sr = load_audio(path)
    assert sr == 16000 and np.abs(wav - stereo[:, 0]).max() <= 1 / 32768 + 1e-7
    with open(path, "rb") as f:
        np.testing.assert_array_equal(load_audio(f)[0], wav)


@pytest.mark.parametrize(
    "data, message",
    [(b"", "empty"), (b"definitely not audio" * 10, "unsupported format"), (b"RIFF\x00\x00", "unsupported format")],
)
def test_load_errors(data, message):
    with pytest.raises(AudioError, match=message):
        load_audio(data)


def test_load_errors_for_no_samples_and_missing_file(tmp_path):
    with pytest.raises(AudioError, match="no samples"):
        load_audio(encoded(np.zeros(0, np.float32), 24000))
    with pytest.raises(AudioError, match="not found"):
        load_audio(tmp_path / "missing.wav")
    assert issubclass(AudioError, ValueError)


# ------------------------------------------------------------------ resampling
@pytest.mark.parametrize("sr_in, sr_out, n", [(16000, 24000, 40000), (44100, 24000, 44100 + 17), (24000, 16000, 7)])
def test_resample_length_and_content(sr_in, sr_out, n):
    x = sine(440.0, sr_in, n / sr_in)
    y = resample(x, sr_in, sr_out)
    assert y.dtype == np.float32 and y.shape == (math.ceil(n * sr_out / sr_in),)
    if n > 1000:  # away from the edges the result is the same tone sampled at sr_out
        ref = sine(440.0, sr_out, len(y) / sr_out)
        mid = slice(len(y) // 4, 3 * len(y) // 4)
        assert np.abs(y[mid] - ref[mid]).max() < 2e-3


def test_resample_same_rate_is_identity():
    x = sine(100.0, 24000, 0.1)
    np.testing.assert_array_equal(resample(x, 24000, 24000), x)


def test_resample_equals_librosa_default():
    librosa = pytest.importorskip("librosa")
    x = (0.3 * np.random.default_rng(1).standard_normal(12345)).astype(np.float32)
    for sr_in, sr_out in [(16000, 24000), (48000, 24000), (22050, 24000)]:
        np.testing.assert_array_equal(resample(x, sr_in, sr_out), librosa.resample(x, orig_sr=sr_in, target_sr=sr_out))


@pytest.mark.parametrize("sr_out", [16000, 22050, 48000])
def test_streaming_resampler_is_continuous(sr_out):
    t = np.arange(2 * 24000) / 24000
    x = (0.5 * np.sin(2 * np.pi * (200 * t + 450 * t**2))).astype(np.float32)  # chirp 200 Hz -> 2 kHz
    chunks = np.split(x, len(x) // 1920)  # 80 ms chunks, as the engine emits them
    rs = StreamingResampler(24000, sr_out)
    out = np.concatenate([rs.process(c) for c in chunks] + [rs.flush()])
    one_shot = soxr.resample(x, 24000, sr_out, quality="HQ")
    assert abs(len(out) - len(x) * sr_out / 24000) <= 1
    n = min(len(out), len(one_shot))
    np.testing.assert_allclose(out[:n], one_shot[:n], atol=1e-6)
    # no click at chunk boundaries: no sample-to-sample step beyond the chirp's own steepest slope
    assert np.abs(np.diff(out[100:-100])).max() < 1.1 * 0.5 * 2 * np.pi * 2000 / sr_out


def test_streaming_resampler_same_rate_passes_through():
    rs = StreamingResampler(24000, 24000)
    x = sine(440.0, 24000, 0.08)
    np.testing.assert_array_equal(rs.process(x), x)
    assert rs.flush().shape == (0,)


# ------------------------------------------------------------------ PCM / WAV
def test_encode_pcm16_clips_and_rounds_little_endian():
    x = np.array([-2.0, -1.0, -0.5, 0.0, 0.5 / 32767, 1.5 / 32767, 0.25, 1.0, 3.0], np.float32)
    raw = encode_pcm(x, "pcm16")
    assert len(raw) == 2 * len(x)
    got = np.frombuffer(raw, dtype="<i2").tolist()
    assert got == [-32767, -32767, -16384, 0, 0, 2, 8192, 32767, 32767]
    assert raw[-2:] == b"\xff\x7f"


def test_encode_pcm32f_is_exact_little_endian():
    x = np.array([-1.5, 0.1, 2.0 ** -20, 1.0], np.float32)
    raw = encode_pcm(x, "pcm32f")
    assert raw == struct.pack("<4f", *x.tolist())
    with pytest.raises(ValueError):
        encode_pcm(x, "mp3")


@pytest.mark.parametrize("fmt, subtype", [("pcm16", "PCM_16"), ("pcm32f", "FLOAT")])
def test_wav_roundtrip(tmp_path, fmt, subtype):
    x = sine(440.0, 24000, 0.2)
    path = tmp_path / "out.wav"
    write_wav(path, x, 24000, fmt)
    info = sf.info(path)
    assert info.samplerate == 24000 and info.channels == 1 and info.subtype == subtype and info.frames == len(x)
    y, _ = sf.read(path, dtype="float32")
    np.testing.assert_allclose(y, x, atol=0 if fmt == "pcm32f" else 1 / 32767)
    assert wav_bytes(x, 24000, fmt) == path.read_bytes()


def test_streaming_wav_header_has_unknown_sizes():
    head = wav_header(24000, "pcm16")
    assert len(head) == 44 and head[:4] == b"RIFF" and head[8:16] == b"WAVEfmt "
    assert struct.unpack("<I", head[4:8])[0] == 0xFFFFFFFF and struct.unpack("<I", head[40:44])[0] == 0xFFFFFFFF
    tag, channels, rate, byte_rate, align, bits = struct.unpack("<HHIIHH", head[20:36])
    assert (tag, channels, rate, byte_rate, align, bits) == (1, 1, 24000, 48000, 2, 16)
    assert struct.unpack("<HHIIHH", wav_header(16000, "pcm32f")[20:36]) == (3, 1, 16000, 64000, 4, 32)
    known = wav_header(24000, "pcm16", num_samples=10)
    assert struct.unpack("<I", known[4:8])[0] == 36 + 20 and struct.unpack("<I", known[40:44])[0] == 20


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
def test_pcm_stream_resamples_continuously_and_finishes_segments(rate):
    """Chunks of 1920 samples resampled as one stream equal the whole resampled at once (no seams);
    `finish()` returns the filter's tail and the next chunk starts a fresh segment."""
    rng = np.random.default_rng(1)
    t = np.arange(1920 * 10) / 24000
    signal = (0.5 * np.sin(2 * np.pi * 440 * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
    out = PcmStream(24000, rate, "pcm32f")
    whole = resample(signal, 24000, rate)
    for _ in range(2):  # two segments: the second equals the first
        streamed = np.concatenate([out.convert(signal[i * 1920 : (i + 1) * 1920]) for i in range(10)] + [out.finish()])
        assert abs(streamed.shape[0] - whole.shape[0]) <= 1
        n = min(streamed.shape[0], whole.shape[0])
        np.testing.assert_allclose(streamed[:n], whole[:n], atol=1e-3)
    assert np.frombuffer(out.encode(streamed), "<f4").shape == streamed.shape


def test_pcm_stream_pcm16_at_the_model_rate():
    out = PcmStream(24000, 24000, "pcm16")
    assert np.frombuffer(out.encode(out.convert(np.full(1920, 0.5, np.float32))), "<i2")[0] == round(0.5 * 32767)
    assert out.finish().shape == (0,)
