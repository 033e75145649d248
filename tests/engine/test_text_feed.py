"""text_feed.py and the waiting slot: a feed's rows per step, and a slot that waits for text keeping every
piece of its state through eager and static frames while another slot steps."""

import pytest
import torch

from makima_tts.engine.prompt import PromptText, build_prompt
from makima_tts.engine.slots import SlotPool, SlotSettings
from makima_tts.engine.static_frames import StaticFrames
from makima_tts.engine.step import FrameStep
from makima_tts.engine.text_feed import TextFeed
from makima_tts.engine.types import SamplingParams, SpeechRequest


def embed(token: int) -> torch.Tensor:
    return torch.full((2,), float(token))


def test_an_open_feed_waits_then_ends_with_eos_and_pads():
    eos, pad = torch.full((2,), -1.0), torch.zeros(2)
    feed = TextFeed(embed, [5], eos, pad, open_text=True)
    assert feed.ready(0) and not feed.ready(1)
    assert torch.equal(feed.row(0), embed(5))
    with pytest.raises(ValueError, match="not arrived"):
        feed.row(1)
    feed.extend([6, 7])
    assert feed.ready(2) and not feed.ready(3) and feed.tokens == 3
    feed.close()
    assert feed.ready(3) and torch.equal(feed.row(3), eos) and torch.equal(feed.row(4), pad)
    with pytest.raises(ValueError, match="closed"):
        feed.extend([8])
    assert feed.closed_rows().tolist() == [[5, 5], [6, 6], [7, 7], [-1, -1]]
    assert TextFeed(embed, [], None, pad).closed_rows().tolist() == [[0, 0]]  # P alone


def test_open_prompt_takes_the_first_token_and_feeds_the_rest(tiny_tts, voice):
    tok, cfg = tiny_tts.tokenizer, tiny_tts.config
    ids = tok.assistant_ids("Hello world, this is a test.")
    req = SpeechRequest("", voice=voice)
    args = (req, cfg, tok, tiny_tts.talker, tiny_tts.code_predictor)
    with torch.inference_mode():
        whole = build_prompt(*args, PromptText(ids[:3], ids[3:-5]))
        opened = build_prompt(*args, PromptText(ids[:3], ids[3:5], open=True))
        with pytest.raises(Exception, match="whole text"):
            build_prompt(*[SpeechRequest("", voice=voice, text_mode="non_streaming"), *args[1:]],
                         PromptText(ids[:3], ids[3:5], open=True))
    assert torch.equal(opened.embeds, whole.embeds)  # the prefill takes only T[0]
    assert opened.feed.open and opened.feed.ids == ids[4:5] and not opened.feed.ready(1)
    opened.feed.extend(ids[5:-5])
    opened.feed.close()
    assert torch.equal(opened.feed.closed_rows(), whole.feed.closed_rows())


STATE = ("lengths", "last_token", "past_hidden", "seen", "generated")


@pytest.mark.parametrize("static", [False, True])
def test_a_waiting_slot_keeps_its_state_while_another_steps(tiny_tts, voice, static):
    pool = SlotPool(tiny_tts, 2, 512, static=static)
    step = FrameStep(tiny_tts, pool)
    runner = StaticFrames(step, cuda_graphs=False) if static else None
    tok = tiny_tts.tokenizer
    with torch.inference_mode():
        for slot, text, open_text in ((0, "A sentence that keeps going for a while.", False), (1, "Wait here", True)):
            ids = tok.assistant_ids(text)
            text_ids = ids[3:5] if open_text else ids[3:-5]
            prompt = build_prompt(SpeechRequest(text, voice=voice), tiny_tts.config, tok, tiny_tts.talker,
                                  tiny_tts.code_predictor, PromptText(ids[:3], text_ids, open_text))
            settings = SlotSettings(SamplingParams(), torch.Generator().manual_seed(slot), 50, False, prompt.feed)
            step.prefill(slot, prompt, settings)
    waiting = pool.settings[1]
    frames = []
    for f in range(4):
        assert pool.stage_participation() == ([0, 1] if f == 0 else [0])  # slot 1 has one text row
        if f == 1:
            before = {name: getattr(pool, name)[1].clone() for name in STATE}
            filled = pool.host_lengths[1]  # cache positions slot 1 has written (its next step writes here)
            cache_before = [t[:, 1, :, :filled].clone() for t in (pool.talker_kv.k, pool.talker_kv.v)]
            rng_before = waiting.generator.get_state()
        if runner is not None:
            frame, _ = runner.run()
        else:
            frame = step.predict_frame()
            step.advance(frame)
        frames.append(frame)
    for name in STATE:
        assert torch.equal(getattr(pool, name)[1], before[name]), name
    for before_t, t in zip(cache_before, (pool.talker_kv.k, pool.talker_kv.v), strict=True):
        assert torch.equal(t[:, 1, :, :filled], before_t)
    assert torch.equal(waiting.generator.get_state(), rng_before)  # no noise drawn while waiting
    assert waiting.frames == 1 and pool.settings[0].frames == 4
    assert all(frame[1].abs().sum() == 0 for frame in frames[1:])  # no codes from the waiting row


def schedule_read(tts, request: SpeechRequest, frames: int) -> list[int]:
    """The reference layout's count (qwen3-tts-reference.md sections 5-6) of the utterance's text tokens
    that frame k has behind it: those in the prefill rows, then one trailing row per frame after the first."""
    tok = tts.tokenizer
    text = tok.assistant_ids(request.text)[3:-5]
    streaming = request.text_mode != "non_streaming"
    if not streaming:
        return [len(text)] * frames  # T ++ E sits in the prefill
    if request.voice.mode == "xvector":  # t0 in the prefill, t1.. then E in the trailing text
        return [min(1 + k, len(text)) for k in range(frames)]
    ref = tok.reference_ids(request.voice.ref_text)
    lc, lt = request.voice.ref_codes.shape[0] + 1, len(ref) + len(text) + 1
    if lt <= lc:
        return [len(text)] * frames  # the whole text is padded into the ICL rows
    track = ["ref"] * len(ref) + ["text"] * len(text) + ["eos"]  # text[:Lc] in the prefill, text[Lc:] trailing
    return [track[: lc + k].count("text") for k in range(frames)]


@pytest.mark.parametrize("layout", ["xvector", "icl_trailing", "icl_covered", "icl_long_transcript", "non_streaming"])
def test_each_frame_reports_the_text_the_talker_had_read(tiny_tts, voice, icl_voice, ref_clip, layout):
    from makima_tts.engine.engine import Engine

    long_text = "Hello world. " * 12 + "This is a tiny test of speech with a long tail of words."
    request = {
        "xvector": SpeechRequest(long_text, voice=voice),
        "icl_trailing": SpeechRequest(long_text, voice=icl_voice, language="english"),
        "icl_covered": SpeechRequest("Hi.", voice=icl_voice, language="english"),
        "icl_long_transcript": None,
        "non_streaming": SpeechRequest(long_text, voice=voice, text_mode="non_streaming"),
    }[layout]
    if layout == "icl_long_transcript":  # more transcript tokens than reference frames: trailing rows start with it
        wordy = tiny_tts.create_voice_prompt(*ref_clip, ref_text=" ".join(["many words"] * 12))
        assert len(tiny_tts.tokenizer.reference_ids(wordy.ref_text)) > wordy.ref_codes.shape[0] + 1
        request = SpeechRequest(long_text, voice=wordy, language="english")
    request = SpeechRequest(**{**request.__dict__, "max_frames": 80, "stop_on_eos": False, "seed": 3})
    expected = schedule_read(tiny_tts, request, 80)
    if layout == "icl_trailing":  # the case is what its name says: text still to come after the prefill
        assert 0 < expected[0] < expected[-1] == len(tiny_tts.tokenizer.assistant_ids(long_text)[3:-5])
    if layout == "icl_long_transcript":  # the first frames read only the rest of the transcript
        assert expected[0] == 0 < expected[-1]
    engine = Engine(tiny_tts, max_streams=1)
    try:
        *frames, done = engine.generate(request, timeout=120)
    finally:
        engine.close()
    assert done.frames == 80 and [f.text_read for f in frames] == expected
