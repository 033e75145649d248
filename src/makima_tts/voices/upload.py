"""Validating and decoding an uploaded reference clip: bytes → float32 mono at 24 kHz, or a `BadAudio`
(or subclass) saying what to fix. Touches no files."""

from __future__ import annotations

import io

import numpy as np

from .errors import AudioTooLarge, BadAudio, UnsupportedAudio
from .prompts import to_model_rate


def _channels(data: bytes) -> int | None:
    """The channel count from the file header, or None when it cannot be read (decoding reports that)."""
    import soundfile

    try:
        return soundfile.info(io.BytesIO(data)).channels
    except Exception:
        return None


def decode_upload(data: bytes, *, min_seconds: float, max_seconds: float, max_bytes: int) -> np.ndarray:
    from ..audio import AudioError, load_audio

    if len(data) > max_bytes:
        raise AudioTooLarge(f"audio file is {len(data)} bytes; the limit is {max_bytes} bytes")
    if not data:
        raise BadAudio("the audio file is empty")
    channels = _channels(data)
    if channels is not None and channels > 2:
        raise BadAudio(f"audio has {channels} channels; send mono or stereo")
    try:
        wav, sr = load_audio(data)  # float32 mono (channels averaged)
    except AudioError as exc:
        raise UnsupportedAudio(f"{exc}; send a WAV, FLAC or OGG file (mono or stereo, 3-20 s of speech)") from None
    seconds = wav.shape[0] / sr
    if seconds < min_seconds:
        raise BadAudio(f"audio is {seconds:.2f} s long; send at least {min_seconds:g} s of speech")
    if seconds > max_seconds:
        raise BadAudio(f"audio is {seconds:.1f} s long; send at most {max_seconds:g} s (3-20 s works best)")
    if not np.isfinite(wav).all() or float(np.abs(wav).max()) < 1e-4:
        raise BadAudio("audio is silent (or not finite); send a recording of someone speaking")
    return np.clip(to_model_rate(wav, sr), -1.0, 1.0).astype(np.float32)
