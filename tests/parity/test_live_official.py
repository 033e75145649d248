"""Live comparison: `makima-tts say` against an installed official `qwen-tts`, on a checkpoint we build.

Needs the official package in its own virtual environment; point OFFICIAL_PYTHON at its interpreter
(default /work/venv-official/bin/python). Skipped, with the reason, when it is not there.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from makima_tts.cli import main as cli_main
from makima_tts.tiny import build_tiny_checkpoint

OFFICIAL_PYTHON = os.environ.get("OFFICIAL_PYTHON", "/work/venv-official/bin/python")
RUNNER = Path(__file__).with_name("official_runner.py")


def _official_available() -> str | None:
    if not Path(OFFICIAL_PYTHON).exists():
        return f"no official qwen-tts interpreter at {OFFICIAL_PYTHON} (set OFFICIAL_PYTHON)"
    probe = subprocess.run([OFFICIAL_PYTHON, "-c", "import qwen_tts"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"{OFFICIAL_PYTHON} cannot import qwen_tts: {probe.stderr.strip().splitlines()[-1:]}"
    return None


pytestmark = [pytest.mark.live_official, pytest.mark.skipif(bool(_official_available()),
                                                            reason=_official_available() or "")]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return build_tiny_checkpoint(tmp_path_factory.mktemp("live") / "tiny", seed=7)


@pytest.fixture(scope="module")
def ref_wav(tmp_path_factory):
    sr = 24000
    t = np.arange(int(2.5 * sr)) / sr
    wav = 0.4 * np.sin(2 * np.pi * 180 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    wav += 0.03 * np.random.default_rng(3).standard_normal(t.shape)
    path = tmp_path_factory.mktemp("ref") / "ref.wav"
    sf.write(path, wav.astype(np.float32), sr, subtype="FLOAT")
    return path


@pytest.mark.parametrize("ref_text", [None, "reference transcript for voice cloning"], ids=["xvector", "icl"])
def test_say_greedy_matches_official(checkpoint, ref_wav, ref_text, tmp_path):
    text = "Hello world. This is a tiny test of speech."
    voice = ["--ref-audio", str(ref_wav)] + (["--ref-text", ref_text] if ref_text else [])
    ours_codes, ours_wav = tmp_path / "ours.npy", tmp_path / "ours.wav"
    rc = cli_main(["say", text, "--model", str(checkpoint), *voice, "--language", "english", "--greedy",
                   "--max-frames", "15", "--no-eos", "-o", str(ours_wav), "--codes-out", str(ours_codes)])
    assert rc == 0
    off_codes, off_wav = tmp_path / "off.npy", tmp_path / "off_wav.npy"
    cmd = [OFFICIAL_PYTHON, str(RUNNER), "--model", str(checkpoint), "--text", text, *voice, "--language",
           "English", "--greedy", "--max-new-tokens", "16", "--no-eos", "--codes-out", str(off_codes),
           "--wav-out", str(off_wav)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    info = json.loads(done.stdout.strip().splitlines()[-1])
    expected = np.load(off_codes)
    assert info["frames"] == 15
    np.testing.assert_array_equal(np.load(ours_codes), expected)
    ours, _ = sf.read(ours_wav, dtype="float32")
    official = np.load(off_wav)
    extra = len(official) - len(ours)  # the official ICL cut may keep one reference sample
    assert extra in (0, 1)
    np.testing.assert_allclose(ours, official[extra:], atol=1e-4)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v"]))
