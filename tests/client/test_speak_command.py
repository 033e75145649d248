"""`makima-tts speak` as a real process against a real server: a valid WAV, and clear errors (a bad
voice, no output chosen, `--play` where no audio device or PortAudio exists)."""

from __future__ import annotations

import re
import subprocess
import sys

import soundfile as sf
from server_helpers import TIMEOUT


def speak(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "makima_tts.cli", "speak", *args], capture_output=True, text=True,
                          timeout=TIMEOUT)


def test_speak_writes_a_valid_wav(server, tmp_path):
    out = tmp_path / "out.wav"
    done = speak("--url", server.ws, "Hello from the command line.", "-o", str(out), "--sample-rate", "16000")
    assert done.returncode == 0, done.stderr
    frames = int(re.search(r"(\d+) frames, ([\d.]+) s of audio", done.stderr).group(1))
    info = sf.info(out)
    assert (info.format, info.subtype, info.samplerate, info.channels) == ("WAV", "PCM_16", 16000, 1)
    assert frames > 0 and info.frames == frames * 16000 * 80 // 1000  # whole 80 ms frames at 16 kHz
    audio, _ = sf.read(out)
    assert abs(audio).max() > 0


def test_speak_errors_are_one_clear_line(server, tmp_path):
    bad_voice = speak("--url", server.ws, "Hi.", "--voice", "nobody", "-o", str(tmp_path / "x.wav"))
    nowhere = speak("--url", server.ws, "Hi.")
    bad_url = speak("--url", "ftp://host", "Hi.", "-o", str(tmp_path / "y.wav"))
    for done in (bad_voice, nowhere, bad_url):
        assert done.returncode in (1, 2) and done.stderr.startswith("error: ") and "Traceback" not in done.stderr
    assert "VOICE_NOT_FOUND" in bad_voice.stderr
    assert "-o FILE.wav and/or --play" in nowhere.stderr
    assert "ws://HOST:PORT" in bad_url.stderr


def test_play_without_an_audio_device_says_so(server, tmp_path):
    done = speak("--url", server.ws, "Hi.", "--play")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    # this machine has no sound card: either PortAudio is missing or it finds no output device
    assert re.match(r"error: (--play needs the PortAudio library|no audio output device|--play needs the "
                    r"sounddevice package)", done.stderr), done.stderr
