"""Engine behaviour on a tiny checkpoint: frames, budget, EOS, cancellation, concurrency, bad requests."""

import queue
import threading
import time

import numpy as np
import pytest
import torch

from makima_tts.engine.codec_stage import QUEUE_STEPS, FrameCodes
from makima_tts.engine.engine import Engine
from makima_tts.engine.prompt import build_prompt
from makima_tts.engine.types import AudioFrame, Finished, SamplingParams, SpeechRequest

TEXT = "Hello world. This is a tiny test of speech."


def collect(engine, request, timeout=120):
    *frames, done = engine.generate(request, timeout=timeout)
    assert isinstance(done, Finished) and all(isinstance(f, AudioFrame) for f in frames)
    return frames, done


@pytest.fixture(scope="module")
def engine(tiny_tts):
    eng = Engine(tiny_tts, max_streams=4)
    yield eng
    eng.close()


def greedy(tts):
    return SamplingParams.from_defaults(tts.config.generation, greedy=True)


def test_frames_have_codes_and_audio(engine, tiny_tts, voice):
    frames, done = collect(engine, SpeechRequest(TEXT, voice=voice, max_frames=6, stop_on_eos=False))
    assert [f.index for f in frames] == list(range(6))
    assert done.frames == 6 and done.truncated and not done.cancelled and done.error is None
    for f in frames:
        assert f.codes.shape == (16,) and f.codes.dtype == np.int64
        assert f.audio.shape == (1920,) and f.audio.dtype == np.float32
        assert 0 <= f.codes.min() and f.codes.max() < 2048
        assert np.abs(f.audio).max() <= 1.0 and np.abs(f.audio).max() > 0


def test_default_budget_follows_text(engine, tiny_tts, voice):
    """Random weights never say EOS, so both run to their budget: 38 + 6 per text token (the tokens
    between the 3 role ids and the 5 closing ids of the assistant turn)."""
    for text in ("Hi.", TEXT * 2):
        request = SpeechRequest(text, voice=voice, sampling=greedy(tiny_tts))
        tokens = len(tiny_tts.tokenizer.assistant_ids(text)) - 8
        prompt = build_prompt(request, tiny_tts.config, tiny_tts.tokenizer, tiny_tts.talker, tiny_tts.code_predictor)
        assert prompt.text_tokens == tokens
        frames, done = collect(engine, request)
        assert done.truncated and done.error is None
        assert len(frames) == done.frames == 38 + 6 * tokens


def test_seeded_runs_repeat_and_differ_by_seed(engine, voice):
    a, _ = collect(engine, SpeechRequest(TEXT, voice=voice, seed=5, max_frames=5, stop_on_eos=False))
    b, _ = collect(engine, SpeechRequest(TEXT, voice=voice, seed=5, max_frames=5, stop_on_eos=False))
    c, _ = collect(engine, SpeechRequest(TEXT, voice=voice, seed=6, max_frames=5, stop_on_eos=False))
    codes = [np.stack([f.codes for f in run]) for run in (a, b, c)]
    np.testing.assert_array_equal(codes[0], codes[1])
    assert not np.array_equal(codes[0], codes[2])


def test_concurrent_streams_equal_solo_runs(engine, tiny_tts, voice, icl_voice):
    requests = [
        SpeechRequest(TEXT, voice=voice, sampling=greedy(tiny_tts), max_frames=8, stop_on_eos=False),
        SpeechRequest("A different sentence here.", voice=icl_voice, seed=11, max_frames=5, stop_on_eos=False),
        SpeechRequest("Third one, sampled.", voice=voice, seed=3, max_frames=11, stop_on_eos=False,
                      text_mode="non_streaming"),
    ]
    solo = [collect(engine, r)[0] for r in requests]
    results = [None] * len(requests)

    def run(i):
        results[i] = collect(engine, requests[i])[0]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for alone, together in zip(solo, results, strict=True):
        assert len(alone) == len(together)
        np.testing.assert_array_equal(np.stack([f.codes for f in alone]), np.stack([f.codes for f in together]))
        np.testing.assert_allclose(np.concatenate([f.audio for f in alone]),
                                   np.concatenate([f.audio for f in together]), atol=1e-5)


def test_cancel_mid_stream_stops_within_a_frame(engine, voice):
    """Cancelled while frame 2 is being delivered (from the sink, so the codec thread is held there),
    the job stops after the frames already handed to the codec (at most QUEUE_STEPS queued + the one
    the generation thread is putting): every frame it made is delivered, then Finished(cancelled)."""
    seen, jobs = [], []

    def sink(event):
        seen.append(event)
        if isinstance(event, AudioFrame) and event.index == 2:
            jobs[0].cancel()

    jobs.append(engine.submit(SpeechRequest(TEXT, voice=voice, max_frames=400, stop_on_eos=False), sink))
    assert jobs[0].done.wait(60)
    done, frames = seen[-1], seen[:-1]
    assert isinstance(done, Finished) and done.cancelled and not done.truncated and done.error is None
    assert [f.index for f in frames] == list(range(done.frames))
    assert 3 <= done.frames <= 3 + QUEUE_STEPS + 1
    assert engine.busy_streams == 0  # the slot is free before the terminal is delivered


def test_generate_yields_frames_then_finished(engine, voice):
    events = list(engine.generate(SpeechRequest(TEXT, voice=voice, max_frames=4, stop_on_eos=False), timeout=60))
    assert [type(e) for e in events] == [AudioFrame] * 4 + [Finished]
    assert [e.index for e in events[:-1]] == [0, 1, 2, 3] and events[-1].frames == 4


def test_leaving_generate_early_cancels_the_job(engine, voice):
    events = engine.generate(SpeechRequest(TEXT, voice=voice, max_frames=400, stop_on_eos=False), timeout=60)
    first = next(events)
    assert isinstance(first, AudioFrame) and first.index == 0
    assert engine.busy_streams == 1
    events.close()  # what `break` out of a for loop over generate() does once the iterator is dropped
    deadline = time.monotonic() + 60  # a hang guard, not a timing check
    while engine.busy_streams and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine.busy_streams == 0
    frames, done = collect(engine, SpeechRequest(TEXT, voice=voice, max_frames=2, stop_on_eos=False))
    assert len(frames) == 2 and done.error is None


def test_cancel_before_admission_and_many_cancels(engine, voice):
    jobs, finals = [], queue.Queue()
    for i in range(40):
        job = engine.submit(SpeechRequest(f"{TEXT} {i}", voice=voice, max_frames=50, stop_on_eos=False),
                            lambda e, i=i: finals.put((i, e)) if isinstance(e, Finished) else None)
        jobs.append(job)
        job.cancel()
    terminals = [finals.get(timeout=60) for _ in jobs]
    assert sorted(i for i, _ in terminals) == list(range(40))
    assert all(e.cancelled for _, e in terminals)


def test_eos_after_min_new_tokens(tiny_tts, voice):
    """With the EOS logit pushed far up, EOS is blocked for the first two tokens (min_new_tokens=2) and
    chosen as the third: two frames, not truncated; with stop_on_eos=False it is never chosen."""
    original = tiny_tts.talker.logits

    def eos_loving(hidden):
        logits = original(hidden)
        logits[:, tiny_tts.config.talker.codec_eos_token_id] += 1000.0
        return logits

    tiny_tts.talker.logits = eos_loving
    eng = Engine(tiny_tts, max_streams=2)
    try:
        frames, done = collect(eng, SpeechRequest(TEXT, voice=voice, sampling=greedy(tiny_tts)))
        assert len(frames) == 2 and done.frames == 2 and not done.truncated
        frames, done = collect(eng, SpeechRequest(TEXT, voice=voice, seed=1))
        assert len(frames) == 2 and not done.truncated
        frames, done = collect(eng, SpeechRequest(TEXT, voice=voice, max_frames=7, stop_on_eos=False))
        assert len(frames) == 7 and done.truncated
        assert all(f.codes[0] != tiny_tts.config.talker.codec_eos_token_id for f in frames)
    finally:
        eng.close()
        del tiny_tts.talker.logits


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(text="   "), "text is empty"),
        (dict(text="hi", language="klingon"), "unsupported language"),
        (dict(text="hi", speaker="serena"), "takes no speaker"),
        (dict(text="hi", max_frames=0), "at least 1"),
        (dict(text="hi", max_frames=10**6), "does not fit"),
    ],
)
def test_bad_requests_finish_with_a_clear_error(engine, voice, kwargs, message):
    frames, done = collect(engine, SpeechRequest(voice=voice, **kwargs))
    assert frames == [] and done.error and message in done.error


def test_base_model_needs_a_voice(engine):
    frames, done = collect(engine, SpeechRequest("hello"))
    assert frames == [] and "clones a voice" in done.error


def test_broken_sink_does_not_stop_the_engine(engine, voice):
    def bad_sink(event):
        raise RuntimeError("client went away")

    engine.submit(SpeechRequest(TEXT, voice=voice, max_frames=3, stop_on_eos=False), bad_sink)
    frames, done = collect(engine, SpeechRequest(TEXT, voice=voice, max_frames=3, stop_on_eos=False))
    assert len(frames) == 3 and done.error is None


def test_close_finishes_queued_jobs(tiny_tts, voice):
    eng = Engine(tiny_tts, max_streams=1)
    finals = queue.Queue()
    for _ in range(3):
        eng.submit(SpeechRequest(TEXT, voice=voice, max_frames=200, stop_on_eos=False),
                   lambda e: finals.put(e) if isinstance(e, Finished) else None)
    eng.close()
    results = [finals.get(timeout=30) for _ in range(3)]
    assert all(r.cancelled for r in results)
    late = queue.Queue()
    eng.submit(SpeechRequest(TEXT, voice=voice), late.put)
    assert late.get(timeout=5).cancelled


def test_voice_prompt_round_trip(tmp_path, icl_voice):
    from makima_tts.voice_prompt import VoicePrompt

    icl_voice.save(tmp_path / "v.safetensors")
    loaded = VoicePrompt.load(tmp_path / "v.safetensors")
    assert loaded.mode == "icl" and loaded.ref_text == icl_voice.ref_text
    assert torch.equal(loaded.ref_codes, icl_voice.ref_codes) and torch.equal(loaded.x_vector, icl_voice.x_vector)


def test_first_audio_phases_add_up_to_the_engine_side_time_to_first_audio(tiny_tts, voice):
    seen = []
    eng = Engine(tiny_tts, max_streams=1, on_first_audio=seen.append)
    try:
        jobs = [eng.submit(SpeechRequest(TEXT, voice=voice, max_frames=4, stop_on_eos=False), lambda _: None)
                for _ in range(2)]  # one slot: the second is queued behind the first
        for job in jobs:
            assert job.done.wait(120)
    finally:
        eng.close()
    assert len(seen) == 2
    for job, phases in zip(jobs, seen, strict=True):
        assert min(phases) >= 0
        assert sum(phases) == pytest.approx(job.first_audio_at - job.submitted_at, abs=1e-9)
    assert seen[1].queued >= jobs[0].first_audio_at - jobs[1].submitted_at  # it waited for the first one's slot


def test_warmup_runs_one_alone_then_every_slot_at_once_and_reports_no_first_audio(tiny_tts):
    """On CPU each new shape costs oneDNN a first call: the warm-up pays for one row and for full slots."""
    seen, rows = [], []
    eng = Engine(tiny_tts, max_streams=3, on_first_audio=seen.append)
    put = eng._codec.put

    def record(message):
        if isinstance(message, FrameCodes):
            rows.append(len(message.rows))
        put(message)

    eng._codec.put = record
    try:
        eng.warmup(frames=2)
    finally:
        eng.close()
    assert rows[:2] == [1, 1] and max(rows) == 3  # the lone one's 2 frames, then all 3 slots together
    assert seen == [] and eng.on_first_audio == seen.append  # warm-up audio is not observed; the observer is back
