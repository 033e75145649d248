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
