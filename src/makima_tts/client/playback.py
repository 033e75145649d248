"""`makima-tts speak --play`: the local audio output through `sounddevice` (PortAudio), or a clear
`PlaybackUnavailable` that says what is missing (the package, the PortAudio library, an output device)."""

from __future__ import annotations

from typing import Any

DTYPES = {"pcm16": "int16", "pcm32f": "float32"}


class PlaybackUnavailable(Exception):
    pass


def open_output(sample_rate: int, encoding: str) -> Any:
    """A started `sounddevice.RawOutputStream` (mono) ready for raw PCM bytes; call `.write(bytes)`."""
    try:
        import sounddevice
    except ImportError:
        raise PlaybackUnavailable("--play needs the sounddevice package: pip install 'makima-tts[play]'") from None
    except OSError as exc:
        raise PlaybackUnavailable(f"--play needs the PortAudio library (Debian: apt-get install libportaudio2): "
                                  f"{exc}; write a file with -o instead") from None
    try:
        sounddevice.check_output_settings(samplerate=sample_rate, channels=1, dtype=DTYPES[encoding])
        stream = sounddevice.RawOutputStream(samplerate=sample_rate, channels=1, dtype=DTYPES[encoding])
    except (sounddevice.PortAudioError, ValueError) as exc:
        raise PlaybackUnavailable(f"no audio output device to play on ({exc}); write a file with -o instead") from None
    stream.start()
    return stream
