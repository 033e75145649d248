"""`makima-tts wyoming --model M`: the server runs in the same process on a loopback port; describe and a
synthesis work, SIGTERM ends both cleanly; bad arguments are one clear line."""

from __future__ import annotations

import subprocess
import sys

from server_helpers import REPO_VOICES, TIMEOUT, run
from wyoming.info import Describe, Info
from wyoming.tts import Synthesize
from wyoming_helpers import WyomingProcess, client, read_until


def test_model_mode_serves_on_its_own(tiny_base_dir, tmp_path):
    env = {"TTS_DEVICE": "cpu", "TTS_DTYPE": "float32", "TTS_PRELOAD": "true", "TTS_WARMUP": "false",
           "TTS_MAX_FRAMES": "6", "TTS_VOICES_DIR": str(REPO_VOICES), "TTS_DATA_DIR": str(tmp_path / "data"),
           "TTS_LOG_LEVEL": "warning"}
    proc = WyomingProcess("--model", str(tiny_base_dir), env=env, cwd=tmp_path)

    async def main():
        async with client(proc) as c:
            await c.write_event(Describe().event())
            info = Info.from_event((await read_until(c, "info"))[-1])
            await c.write_event(Synthesize(text="All in one process.").event())
            events = await read_until(c, "audio-stop", "error")
        return info, events

    try:
        info, events = run(main())
    finally:
        log = proc.stop()
    assert info.tts[0].supports_synthesize_streaming and "default" in [v.name for v in info.tts[0].voices]
    assert [e.type for e in events] == ["audio-start", *["audio-chunk"] * 6, "audio-stop"]
    assert proc.proc.returncode == 0, log


def test_bad_arguments_are_one_clear_line():
    both = subprocess.run([sys.executable, "-m", "makima_tts.cli", "wyoming", "--url", "http://x:1", "--model", "m"],
                          capture_output=True, text=True, timeout=TIMEOUT)
    bad_uri = subprocess.run([sys.executable, "-m", "makima_tts.cli", "wyoming", "--uri", "udp://0.0.0.0:1",
                              "--url", "http://127.0.0.1:1"], capture_output=True, text=True, timeout=TIMEOUT)
    bad_url = subprocess.run([sys.executable, "-m", "makima_tts.cli", "wyoming", "--uri", "tcp://127.0.0.1:0",
                              "--url", "ftp://nowhere"], capture_output=True, text=True, timeout=TIMEOUT)
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
    assert bad_uri.returncode == 2 and "error: " in bad_uri.stderr and "tcp://" in bad_uri.stderr
    assert bad_url.returncode == 2 and "error: " in bad_url.stderr and "ws://HOST:PORT" in bad_url.stderr
    assert "Traceback" not in bad_uri.stderr + bad_url.stderr
