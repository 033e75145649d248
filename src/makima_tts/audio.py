"""Audio in and out: decoding uploads, resampling, PCM encoding and WAV framing.

- `load_audio(path | bytes | file) -> (float32 mono [N], sr)`: any format libsndfile reads; several
  channels are averaged, as the official reference loader does. Failures raise `AudioError`.
- `resample(wav, sr_in, sr_out)`: equals `librosa.resample` with its default (soxr "HQ", output length
  ceil(N * sr_out / sr_in), trimmed or zero-padded), via `soxr` directly.
- `StreamingResampler`: the same filter applied to a stream of chunks (soxr.ResampleStream), continuous
  across chunk boundaries; `process(chunk)` then `flush()` at the end.
- `PcmStream`: one client stream (resample, then encode); `finish()` ends a segment and returns the
  filter's tail, ready for the next segment.
- `encode_pcm(samples, "pcm16" | "pcm32f") -> bytes`, little-endian; pcm16 clips to [-1, 1], scales by
  32767 and rounds to nearest (ties to even).
- WAV: `wav_header(sr, fmt, num_samples=None)` (None = unknown length, for a streamed HTTP body: the
  RIFF and data sizes are 0xFFFFFFFF) and `write_wav` / `wav_bytes` for whole clips.
"""

from __future__ import annotations

import io
import math
import struct
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
import soundfile as sf
import soxr

PcmFormat = Literal["pcm16", "pcm32f"]
_SOXR_QUALITY = "HQ"  # librosa's default res_type "soxr_hq"
_UNKNOWN = 0xFFFFFFFF


class AudioError(ValueError):
    """The input is not audio we can read (or is empty)."""


def load_audio(source: str | Path | bytes | bytearray | BinaryIO) -> tuple[np.ndarray, int]:
    """Decode a file path, raw bytes or a binary file object to (float32 mono [N], sample rate)."""
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise AudioError("the audio upload is empty")
        source = io.BytesIO(bytes(source))
    elif isinstance(source, (str, Path)) and not Path(source).is_file():
        raise AudioError(f"audio file not found: {source}")
    try:
        data, sr = sf.read(source, dtype="float32", always_2d=True)  # [N, channels]
    except sf.LibsndfileError as e:
        raise AudioError(f"not a readable audio file or unsupported format ({e.error_string})") from e
    except (RuntimeError, TypeError, EOFError) as e:
        raise AudioError(f"not a readable audio file or unsupported format ({e})") from e
    if data.shape[0] == 0:
        raise AudioError("the audio contains no samples")
    wav = data[:, 0] if data.shape[1] == 1 else data.mean(axis=-1)
    if not np.isfinite(wav).all():
        raise AudioError("the audio contains NaN or infinite samples")
    return np.ascontiguousarray(wav, dtype=np.float32), int(sr)


def resample(wav: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """One-shot resampling, equal to librosa.resample(wav, orig_sr=sr_in, target_sr=sr_out)."""
    wav = np.asarray(wav, dtype=np.float32)
    if sr_in == sr_out:
        return wav
    n_out = math.ceil(wav.shape[-1] * float(sr_out) / sr_in)
    out = soxr.resample(wav, sr_in, sr_out, quality=_SOXR_QUALITY)
    if out.shape[-1] >= n_out:
        return np.ascontiguousarray(out[:n_out], dtype=np.float32)
    return np.pad(out, (0, n_out - out.shape[-1])).astype(np.float32)


class StreamingResampler:
    """Resample a mono float32 stream chunk by chunk (one instance per stream)."""

    def __init__(self, sr_in: int, sr_out: int):
        self.sr_in, self.sr_out = sr_in, sr_out
        self._stream = None if sr_in == sr_out else soxr.ResampleStream(sr_in, sr_out, 1, "float32", _SOXR_QUALITY)

    def process(self, chunk: np.ndarray) -> np.ndarray:
        chunk = np.ascontiguousarray(chunk, dtype=np.float32)
        if self._stream is None:
            return chunk
        return self._stream.resample_chunk(chunk, last=False)

    def flush(self) -> np.ndarray:
        """The samples still held in the filter; the stream is finished afterwards."""
        if self._stream is None:
            return np.zeros(0, np.float32)
        return self._stream.resample_chunk(np.zeros(0, np.float32), last=True)


class PcmStream:
    """Float32 audio at `sr_in` to a client's `encoding` at `sr_out`, continuous across chunks."""

    def __init__(self, sr_in: int, sr_out: int, encoding: PcmFormat):
        self.sr_in, self.sr_out, self.encoding = sr_in, sr_out, encoding
        self._resampler = StreamingResampler(sr_in, sr_out)

    def convert(self, chunk: np.ndarray) -> np.ndarray:
        return self._resampler.process(chunk)

    def finish(self) -> np.ndarray:
        """The end of a segment: what the filter still holds; the next chunk starts a fresh segment."""
        tail = self._resampler.flush()
        self._resampler = StreamingResampler(self.sr_in, self.sr_out)
        return tail

    def encode(self, samples: np.ndarray) -> bytes:
        return encode_pcm(samples, self.encoding)


def encode_pcm(samples: np.ndarray, fmt: PcmFormat) -> bytes:
    x = np.asarray(samples, dtype=np.float32)
    if fmt == "pcm16":
        return np.rint(np.clip(x, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
    if fmt == "pcm32f":
        return x.astype("<f4").tobytes()
    raise ValueError(f"unknown PCM format {fmt!r} (use 'pcm16' or 'pcm32f')")


def wav_header(sample_rate: int, fmt: PcmFormat = "pcm16", num_samples: int | None = None) -> bytes:
    """44-byte mono WAV header; `num_samples=None` marks an unknown length (streaming)."""
    if fmt not in ("pcm16", "pcm32f"):
        raise ValueError(f"unknown PCM format {fmt!r} (use 'pcm16' or 'pcm32f')")
    width = 2 if fmt == "pcm16" else 4
    tag = 1 if fmt == "pcm16" else 3  # WAVE_FORMAT_PCM / WAVE_FORMAT_IEEE_FLOAT
    if num_samples is None:
        data_size = riff_size = _UNKNOWN
    else:
        data_size = num_samples * width
        riff_size = 36 + data_size
    fmt_chunk = struct.pack("<HHIIHH", tag, 1, sample_rate, sample_rate * width, width, 8 * width)
    return (b"RIFF" + struct.pack("<I", riff_size) + b"WAVE" + b"fmt " + struct.pack("<I", len(fmt_chunk))
            + fmt_chunk + b"data" + struct.pack("<I", data_size))


def wav_bytes(samples: np.ndarray, sample_rate: int, fmt: PcmFormat = "pcm16") -> bytes:
    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    return wav_header(sample_rate, fmt, x.shape[0]) + encode_pcm(x, fmt)


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int, fmt: PcmFormat = "pcm16") -> None:
    Path(path).write_bytes(wav_bytes(samples, sample_rate, fmt))
