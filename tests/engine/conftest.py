"""Engine test fixtures: voices of the tiny Base checkpoint (tests/conftest.py), cloned once per session,
and a tiny CustomVoice checkpoint."""

import pytest

from makima_tts.engine.types import SpeechRequest
from makima_tts.model.tts import TTSModel
from makima_tts.tiny import build_tiny_checkpoint


@pytest.fixture(scope="session")
def custom_tts(tmp_path_factory):
    return TTSModel.load(build_tiny_checkpoint(tmp_path_factory.mktemp("cv") / "cv", seed=1, kind="custom_voice"))


@pytest.fixture(scope="session")
def voice(tiny_tts, ref_clip):
    """x-vector-only clone of the reference clip."""
    return tiny_tts.create_voice_prompt(*ref_clip)


@pytest.fixture(scope="session")
def icl_voice(tiny_tts, ref_clip):
    """ICL clone of the reference clip (with its transcript)."""
    return tiny_tts.create_voice_prompt(*ref_clip, ref_text="reference transcript for voice cloning")


@pytest.fixture(scope="session")
def base_batch(voice, icl_voice):
    """8 mixed Base prompts: x-vector and ICL, streaming and whole text, different lengths."""
    texts = ["Hi.", "Hello world. This is a tiny test of speech.", "A different sentence here, a bit longer.",
             "Short one."]
    requests = []
    for i, text in enumerate(texts):
        requests.append(SpeechRequest(text, voice=voice, text_mode="streaming" if i % 2 else "non_streaming"))
        requests.append(SpeechRequest(text, voice=icl_voice, language="english",
                                      text_mode="non_streaming" if i % 2 else "streaming"))
    return requests


@pytest.fixture(scope="session")
def custom_batch(custom_tts):
    """8 CustomVoice prompts: speakers, languages and text modes mixed, different lengths."""
    speakers = custom_tts.config.speakers
    return [SpeechRequest(" ".join(["Spoken by a preset speaker"] * (1 + i // 2)) + ".", speaker=speakers[i % len(speakers)],
                          language=("english", "auto", "chinese")[i % 3],
                          text_mode="streaming" if i % 2 else "non_streaming") for i in range(8)]
