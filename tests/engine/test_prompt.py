"""prompt.py on the tiny checkpoints: which requests each model type refuses, and how many prefill rows
and trailing text rows each mode makes (the layout in prompt.py's docstring), plus the warm-up request
of every model type (warmup.py)."""

from dataclasses import replace

import pytest
import torch

from makima_tts.engine.prompt import PromptError, build_prompt
from makima_tts.engine.types import SpeechRequest
from makima_tts.engine.warmup import warmup_request
from makima_tts.model.tts import TTSModel
from makima_tts.tiny import build_tiny_checkpoint

TEXT = "Hello world. This is a tiny test of speech."
ROLE = 3  # <|im_start|> assistant \n


@pytest.fixture(scope="module")
def design_tts(tmp_path_factory):
    return TTSModel.load(build_tiny_checkpoint(tmp_path_factory.mktemp("vd") / "vd", seed=2, kind="voice_design"))


def prompt_for(tts, request, config=None):
    with torch.inference_mode():
        return build_prompt(request, config or tts.config, tts.tokenizer, tts.talker, tts.code_predictor)


def text_tokens(tts, text=TEXT) -> int:
    return len(tts.tokenizer.assistant_ids(text)) - 8  # role (3) + closing (5) ids around the text


def control_rows(language: str) -> int:
    """think / nothink, think_bos, [language], think_eos."""
    return 3 if language == "auto" else 4


# ---------------------------------------------------------------------------------------- refusals
@pytest.mark.parametrize("kwargs, message", [
    (dict(), "clones a voice"),
    (dict(speaker="serena"), "takes no speaker"),
    (dict(instruct="calm"), "takes no speaker name or instruct"),
])
def test_base_refusals(tiny_tts, voice, kwargs, message):
    if "speaker" in kwargs or "instruct" in kwargs:
        kwargs["voice"] = voice
    with pytest.raises(PromptError, match=message):
        prompt_for(tiny_tts, SpeechRequest(TEXT, **kwargs))


def test_custom_voice_refusals(custom_tts, voice):
    with pytest.raises(PromptError, match="needs a speaker"):
        prompt_for(custom_tts, SpeechRequest(TEXT))
    with pytest.raises(PromptError, match="unknown speaker 'nobody'"):
        prompt_for(custom_tts, SpeechRequest(TEXT, speaker="nobody"))
    with pytest.raises(PromptError, match="cannot clone a voice"):
        prompt_for(custom_tts, SpeechRequest(TEXT, speaker="serena", voice=voice))
    small = replace(custom_tts.config, tts_model_size="0b6")
    with pytest.raises(PromptError, match="does not support instruct"):
        prompt_for(custom_tts, SpeechRequest(TEXT, speaker="serena", instruct="calm"), small)


def test_voice_design_refusals(design_tts, voice):
    with pytest.raises(PromptError, match="takes an instruct"):
        prompt_for(design_tts, SpeechRequest(TEXT, speaker="serena"))
    with pytest.raises(PromptError, match="takes an instruct"):
        prompt_for(design_tts, SpeechRequest(TEXT, voice=voice))


def test_text_and_language_refusals(tiny_tts, voice):
    with pytest.raises(PromptError, match="text is empty"):
        prompt_for(tiny_tts, SpeechRequest("  \n", voice=voice))
    with pytest.raises(PromptError, match="unsupported language 'klingon'"):
        prompt_for(tiny_tts, SpeechRequest(TEXT, voice=voice, language="klingon"))


# ---------------------------------------------------------------------------------------- row counts
@pytest.mark.parametrize("language", ["auto", "English"])
def test_x_vector_rows(tiny_tts, voice, language):
    t = text_tokens(tiny_tts)
    head = ROLE + control_rows(language) + 1 + 1  # + x-vector row + (tts_bos + C(pad))
    streaming = prompt_for(tiny_tts, SpeechRequest(TEXT, voice=voice, language=language))  # Base default
    assert streaming.embeds.shape[1] == head + 1  # T[0] + C(bos)
    assert streaming.feed.closed_rows().shape[0] == t  # T[1:] ++ E
    assert streaming.text_tokens == t and streaming.ref_codes is None
    whole = prompt_for(tiny_tts, SpeechRequest(TEXT, voice=voice, language=language, text_mode="non_streaming"))
    assert whole.embeds.shape[1] == head + t + 1 + 1  # (T ++ E) + C(pad), then P + C(bos)
    assert whole.feed.closed_rows().shape[0] == 1  # P only
    torch.testing.assert_close(whole.feed.closed_rows()[0], whole.feed.pad)


def test_icl_rows(tiny_tts, icl_voice):
    t = text_tokens(tiny_tts)
    ref_text = len(tiny_tts.tokenizer.reference_ids(icl_voice.ref_text))
    ref_frames = icl_voice.ref_codes.shape[0]
    head = ROLE + control_rows("auto") + 1 + 1
    text_rows, codec_rows = ref_text + t + 1, 1 + ref_frames  # (ref ++ T ++ E), (C(bos) ++ ref frames)
    streaming = prompt_for(tiny_tts, SpeechRequest(TEXT, voice=icl_voice))
    assert streaming.embeds.shape[1] == head + codec_rows
    assert streaming.feed.closed_rows().shape[0] == max(text_rows - codec_rows, 1)  # leftover text, else P
    assert torch.equal(streaming.ref_codes.cpu(), icl_voice.ref_codes)
    whole = prompt_for(tiny_tts, SpeechRequest(TEXT, voice=icl_voice, text_mode="non_streaming"))
    assert whole.embeds.shape[1] == head + text_rows + codec_rows
    assert whole.feed.closed_rows().shape[0] == 1


def test_custom_voice_rows(custom_tts):
    t = text_tokens(custom_tts)
    head = ROLE + control_rows("english") + 1 + 1  # + speaker row
    whole = prompt_for(custom_tts, SpeechRequest(TEXT, speaker="serena", language="english"))  # default: whole text
    assert whole.embeds.shape[1] == head + t + 2 and whole.feed.closed_rows().shape[0] == 1
    streaming = prompt_for(custom_tts, SpeechRequest(TEXT, speaker="serena", language="english",
                                                     text_mode="streaming"))
    assert streaming.embeds.shape[1] == head + 1 and streaming.feed.closed_rows().shape[0] == t
    instruct = "Speak slowly."
    with_instruct = prompt_for(custom_tts, SpeechRequest(TEXT, speaker="serena", language="english",
                                                         instruct=instruct))
    extra = len(custom_tts.tokenizer.instruct_ids(instruct))
    assert with_instruct.embeds.shape[1] == whole.embeds.shape[1] + extra


def test_voice_design_rows(design_tts):
    t = text_tokens(design_tts)
    instruct = "A calm, low voice."
    extra = len(design_tts.tokenizer.instruct_ids(instruct))
    head = extra + ROLE + control_rows("auto") + 1  # no speaker row
    whole = prompt_for(design_tts, SpeechRequest(TEXT, instruct=instruct))
    assert whole.embeds.shape[1] == head + t + 2 and whole.feed.closed_rows().shape[0] == 1
    streaming = prompt_for(design_tts, SpeechRequest(TEXT, instruct=instruct, text_mode="streaming"))
    assert streaming.embeds.shape[1] == head + 1 and streaming.feed.closed_rows().shape[0] == t


# ---------------------------------------------------------------------------------------- warm-up
def test_warmup_request_fits_every_model_type(tiny_tts, custom_tts, design_tts):
    for tts in (tiny_tts, custom_tts, design_tts):
        request = warmup_request(tts.config, frames=3)
        assert request.max_frames == 3 and not request.stop_on_eos
        assert prompt_for(tts, request).embeds.shape[1] > 0
