"""The streaming encoders: every format reads back (PyAV, and soundfile where libsndfile knows the format)
with the samples that went in, and each one hands out bytes after the first frames, not only at the end."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest
import soundfile as sf

from makima_tts.encoders import MEDIA_TYPES, RESPONSE_FORMATS, make_encoder

SR, FRAME = 24000, 1920
# Codec priming and the padding of the last codec frame that a streamed file cannot declare (no gapless
# header is written at the end): LAME and FFmpeg's AAC add up to about two codec frames.
EXTRA = {"mp3": 2 * 576 + 1105, "aac": 3 * 1024}
# libsndfile has no AAC, and cannot read a FLAC whose header leaves the length unknown (it seeks past the
# end), as a streamed one must; FFmpeg (ffprobe, PyAV) reads both.
SOUNDFILE_READS = ("mp3", "opus", "wav")
CONTAINER = {"mp3": "mp3", "opus": "ogg", "aac": "aac", "flac": "flac", "wav": "wav"}


def tone(frames: int) -> np.ndarray:
    t = np.arange(frames * FRAME) / SR
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.3 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def encode_in_frames(fmt: str, audio: np.ndarray) -> list[bytes]:
    encoder = make_encoder(fmt, SR)
    parts = [encoder.encode(audio[i:i + FRAME]) for i in range(0, audio.shape[0], FRAME)]
    return parts + [encoder.finish()]


def probe(data: bytes) -> dict:
    """container, codec, rate, channels and decoded samples of a file, read by PyAV (FFmpeg)."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        decoded = [frame for frame in container.decode(stream)]
        return {"container": container.format.name.split(",")[0], "codec": stream.codec_context.name,
                "rate": stream.codec_context.sample_rate, "channels": stream.codec_context.channels,
                "samples": sum(f.samples for f in decoded) * SR // decoded[0].sample_rate}


def soundfile_samples(data: bytes) -> int:
    audio, rate = sf.read(io.BytesIO(data), dtype="float32")
    return audio.shape[0] * SR // rate


@pytest.mark.parametrize("fmt", [f for f in RESPONSE_FORMATS if f != "pcm"])
def test_every_format_reads_back_with_its_samples(fmt):
    audio = tone(25)
    data = b"".join(encode_in_frames(fmt, audio))
    got = probe(data)
    assert got["container"] == CONTAINER[fmt] and got["channels"] == 1
    assert got["rate"] == (48000 if fmt == "opus" else SR)  # Opus decodes at 48 kHz; its header says 24 kHz
    assert audio.shape[0] <= got["samples"] <= audio.shape[0] + EXTRA.get(fmt, 0), got
    if fmt in SOUNDFILE_READS:
        assert audio.shape[0] <= soundfile_samples(data) <= audio.shape[0] + EXTRA.get(fmt, 0)


def test_pcm_is_the_samples_themselves():
    audio = tone(3)
    data = b"".join(encode_in_frames("pcm", audio))
    back = np.frombuffer(data, "<i2").astype(np.float32) / 32767
    assert back.shape == audio.shape and np.abs(back - audio).max() < 1e-4


@pytest.mark.parametrize("fmt", RESPONSE_FORMATS)
def test_bytes_leave_after_the_first_frames(fmt):
    parts = encode_in_frames(fmt, tone(25))
    assert sum(map(len, parts[:3])) > 0  # within the first three 80 ms frames
    assert sum(map(len, parts[:-1])) > 0.7 * sum(map(len, parts))  # most of the file before the end
    assert fmt in MEDIA_TYPES


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="mp3, opus"):
        make_encoder("ogg", SR)


def test_speed_stretches_the_encoded_file():
    audio = tone(25)  # 2 s
    encoder = make_encoder("mp3", SR, speed=2.0)
    parts = [encoder.encode(audio[i:i + FRAME]) for i in range(0, audio.shape[0], FRAME)] + [encoder.finish()]
    got = probe(b"".join(parts))
    assert abs(got["samples"] - audio.shape[0] / 2) <= 0.05 * SR + EXTRA["mp3"]
