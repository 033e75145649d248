"""Streaming audio encoders for the OpenAI speech formats: float32 mono chunks in, file bytes out as they
are made, so that the first bytes of a file leave after its first frames.

    make_encoder(fmt, sample_rate, speed=1.0) -> StreamEncoder   (speed != 1: through tempo.TempoStretch)
    encoder.encode(samples [N] float32) -> bytes   (possibly b"" while a codec fills its first frame)
    encoder.finish() -> bytes                      (the codec's tail and the container's trailer)

- `pcm`: raw 16-bit little-endian samples (`PcmEncoder` also writes float32 for our own route); `wav`: our 44-byte header with unknown sizes (0xFFFFFFFF,
  see `audio.wav_header`: readers take the data to run to the end of the file), then the same samples.
- `mp3` (LAME), `opus` (libopus in Ogg), `aac` (FFmpeg's AAC encoder in ADTS), `flac`: PyAV, the
  maintained Python binding of FFmpeg, whose wheels bundle these encoders. libsndfile (soundfile) writes
  FLAC, Ogg Opus and MP3 but no AAC, so one library covers all four. The muxer writes into a sink
  that is not seekable, so nothing is patched at the end: an MP3 has no Xing header, a FLAC's STREAMINFO
  leaves its total-sample count 0 (unknown), as streamed files do. `flush_packets` hands every packet
  over at once, and Ogg pages are cut every 20 ms instead of every second.

Encoding a 80 ms frame takes well under a millisecond, so the server does it on the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

import av
import numpy as np

from .audio import PcmFormat, encode_pcm, wav_header
from .tempo import TempoStretch

ResponseFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]
RESPONSE_FORMATS: tuple[str, ...] = ("mp3", "opus", "aac", "flac", "wav", "pcm")
MEDIA_TYPES: dict[str, str] = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}


class StreamEncoder(Protocol):
    def encode(self, samples: np.ndarray) -> bytes: ...

    def finish(self) -> bytes: ...


class PcmEncoder:
    """Raw little-endian samples; with `header`, a streamed WAV (its header before the first samples)."""

    def __init__(self, sample_rate: int, header: bool, encoding: PcmFormat = "pcm16"):
        self.encoding = encoding
        self._pending = wav_header(sample_rate, encoding) if header else b""

    def encode(self, samples: np.ndarray) -> bytes:
        out, self._pending = self._pending + encode_pcm(samples, self.encoding), b""
        return out

    def finish(self) -> bytes:
        out, self._pending = self._pending, b""
        return out


@dataclass(frozen=True)
class _Codec:
    container: str  # FFmpeg muxer
    codec: str  # FFmpeg encoder
    bit_rate: int | None = None
    container_options: dict[str, str] = field(default_factory=dict)


_CODECS: dict[str, _Codec] = {
    "mp3": _Codec("mp3", "libmp3lame", 64_000),
    "opus": _Codec("ogg", "libopus", 32_000, {"page_duration": "20000"}),  # µs: one page per Opus frame
    "aac": _Codec("adts", "aac", 64_000),
    "flac": _Codec("flac", "flac"),
}


class _Sink:
    """The muxer's output: collects what it writes (no seek: a streamed file is never patched)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


class AvEncoder:
    """One compressed stream through PyAV: an encoder and its muxer, writing into a `_Sink`."""

    def __init__(self, fmt: str, sample_rate: int):
        spec = _CODECS[fmt]
        self.sample_rate, self._pts = sample_rate, 0
        self._sink = _Sink()
        options = {"flush_packets": "1", **spec.container_options}
        self._container = av.open(self._sink, mode="w", format=spec.container, options=options, buffer_size=4096)
        self._stream = self._container.add_stream(spec.codec, rate=sample_rate, layout="mono")
        if spec.bit_rate is not None:
            self._stream.bit_rate = spec.bit_rate

    def encode(self, samples: np.ndarray) -> bytes:
        x = np.ascontiguousarray(np.clip(samples, -1.0, 1.0), dtype=np.float32)
        if x.shape[0] == 0:
            return self._sink.take()
        frame = av.AudioFrame.from_ndarray(x[None, :], format="flt", layout="mono")  # [1, N] packed
        frame.sample_rate, frame.pts = self.sample_rate, self._pts
        self._pts += x.shape[0]
        for packet in self._stream.encode(frame):  # reformatted to the codec's sample format as needed
            self._container.mux(packet)
        return self._sink.take()

    def finish(self) -> bytes:
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        return self._sink.take()


class StretchedEncoder:
    """An encoder fed through `TempoStretch`: the same voice, faster or slower, at the same pitch."""

    def __init__(self, inner: StreamEncoder, stretch: TempoStretch):
        self.inner, self.stretch = inner, stretch

    def encode(self, samples: np.ndarray) -> bytes:
        return self.inner.encode(self.stretch.process(samples))

    def finish(self) -> bytes:
        return self.inner.encode(self.stretch.flush()) + self.inner.finish()


def make_encoder(fmt: str, sample_rate: int, speed: float = 1.0) -> StreamEncoder:
    if fmt in ("pcm", "wav"):
        encoder: StreamEncoder = PcmEncoder(sample_rate, header=fmt == "wav")
    elif fmt in _CODECS:
        encoder = AvEncoder(fmt, sample_rate)
    else:
        raise ValueError(f"unknown response format {fmt!r}; use one of {', '.join(RESPONSE_FORMATS)}")
    return encoder if speed == 1.0 else StretchedEncoder(encoder, TempoStretch(sample_rate, speed))
