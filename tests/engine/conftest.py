"""Engine test fixtures: voices of the tiny Base checkpoint (tests/conftest.py), cloned once per session."""

import pytest


@pytest.fixture(scope="session")
def voice(tiny_tts, ref_clip):
    """x-vector-only clone of the reference clip."""
    return tiny_tts.create_voice_prompt(*ref_clip)


@pytest.fixture(scope="session")
def icl_voice(tiny_tts, ref_clip):
    """ICL clone of the reference clip (with its transcript)."""
    return tiny_tts.create_voice_prompt(*ref_clip, ref_text="reference transcript for voice cloning")
