"""Shared fixtures: a tiny random checkpoint built by our own `make-tiny-model`, and a reference clip."""

import numpy as np
import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_base_dir(tmp_path_factory):
    from makima_tts.tiny import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "base", seed=0, kind="base")


@pytest.fixture(scope="session")
def tiny_tts(tiny_base_dir):
    from makima_tts.model.tts import TTSModel

    return TTSModel.load(tiny_base_dir)


@pytest.fixture(scope="session")
def ref_clip():
    """(float32 mono, 24000): 2 s of a modulated tone with a little noise."""
    sr = 24000
    t = np.arange(2 * sr) / sr
    wav = 0.4 * np.sin(2 * np.pi * 200 * t) * (1 + 0.5 * np.sin(2 * np.pi * 2 * t))
    wav += 0.02 * np.random.default_rng(1).standard_normal(t.shape)
    return wav.astype(np.float32), sr



@pytest.fixture(scope="session")
def parity_fixtures():
    """tests/parity/fixtures.py (the committed official outputs), importable from any test directory."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("parity_fixtures", Path(__file__).parent / "parity" / "fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def eos_checkpoint_dir(parity_fixtures):
    """The parity fixtures' `base_eos` checkpoint (tests/fixtures/parity/README.md): its utterances end on
    the end token, as real ones do (with the `ref24` clip: greedy x-vector after 4 frames, as the official
    package does; seeded runs after 2 to 15)."""
    return parity_fixtures.checkpoint_dir("base_eos")


@pytest.fixture(scope="session")
def eos_tts(eos_checkpoint_dir):
    from makima_tts.model.tts import TTSModel

    return TTSModel.load(eos_checkpoint_dir)


@pytest.fixture(scope="session")
def eos_voice(eos_tts, parity_fixtures):
    """x-vector voice of the parity clip `ref24` on the base_eos checkpoint."""
    return eos_tts.create_voice_prompt(parity_fixtures.load_array("ref24/audio"), 24000)
