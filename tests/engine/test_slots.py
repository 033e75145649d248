"""Slots freed while other streams run (the end-token bug: a slot whose utterance ended on the end token
kept 2150 as its codebook 0, the next frame carried that row into the codec, whose codebook has 2048
entries, and every stream of the step failed).

Checked here: a free row is inert in eager and static frames (codebook 0 and every code 0); the codec
stage rejects an out-of-range row alone; on the `base_eos` checkpoint, whose utterances end on the end
token as real ones do, slots freed lowest / middle / highest by end token, budget, cancel or a codec
error leave every other stream complete and equal to its solo run.
"""

from __future__ import annotations

import queue
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from makima_tts.engine.codec_stage import CodecStage
from makima_tts.engine.engine import Engine
from makima_tts.engine.prompt import build_prompt
from makima_tts.engine.slots import SlotPool, SlotSettings
from makima_tts.engine.step import FrameStep
from makima_tts.engine.types import AudioFrame, Finished, SamplingParams, SpeechRequest

TEXT = "Hello world. This is a tiny test of speech."
EOS = 2150
TIMEOUT = 120  # a hang guard for each wait, not a timing check


def greedy(tts) -> SamplingParams:
    return SamplingParams.from_defaults(tts.config.generation, greedy=True)


def eos_request(tts, voice) -> SpeechRequest:
    """The official `eos_xvec_greedy` case: ends on the end token after 4 frames."""
    return SpeechRequest(TEXT, language="English", voice=voice, text_mode="streaming", sampling=greedy(tts),
                         max_frames=59)


def long_request(voice, seed: int, frames: int = 10) -> SpeechRequest:
    """Seeded sampling that runs to its budget (the end token is never chosen)."""
    return SpeechRequest(f"{TEXT} Number {seed}.", voice=voice, seed=seed, max_frames=frames, stop_on_eos=False)


@dataclass
class Spec:
    request: SpeechRequest
    cancel_after: int | None = None  # cancel once this frame index has arrived
    bad_code_at: int | None = None  # hand the codec an id >= 2048 in this job's row at this frame


class BadCodeAt:
    """Wraps the engine's hand-over to the codec so that chosen jobs' rows carry code 4096 at a chosen
    frame: a code path handing the codec an id outside its codebook."""

    def __init__(self, engine: Engine):
        self.stage, self.targets = engine._codec, {}
        self.inner = self.stage._deliver
        self.stage._deliver = self

    def __call__(self, frame, rows, verdict, held):
        for slot, job, index, _ in rows:
            if self.targets.get(job.id) == index:
                frame = frame.clone()
                frame[slot, 5] = 4096
        return self.inner(frame, rows, verdict, held)

    def remove(self) -> None:
        del self.stage._deliver


def run_together(engine: Engine, specs: list[Spec]) -> tuple[list[list[AudioFrame]], list[Finished], list]:
    """Submit every spec at once; returns each job's frames, its terminal, and the delivery log
    [(job index, event)] in the order the sinks saw them."""
    events: queue.Queue = queue.Queue()
    injector = BadCodeAt(engine) if any(s.bad_code_at is not None for s in specs) else None
    jobs = [engine.submit(s.request, lambda e, i=i: events.put((i, e))) for i, s in enumerate(specs)]
    if injector is not None:
        injector.targets = {jobs[i].id: s.bad_code_at for i, s in enumerate(specs) if s.bad_code_at is not None}
    frames: list[list[AudioFrame]] = [[] for _ in specs]
    finals: list[Finished | None] = [None] * len(specs)
    log = []
    try:
        while any(f is None for f in finals):
            i, event = events.get(timeout=TIMEOUT)
            log.append((i, event))
            assert finals[i] is None, f"job {i}: an event after its terminal"
            if isinstance(event, Finished):
                finals[i] = event
            else:
                frames[i].append(event)
                if specs[i].cancel_after == event.index:
                    jobs[i].cancel()
    finally:
        if injector is not None:
            injector.remove()
    return frames, finals, log


def codes(frames: list[AudioFrame]) -> np.ndarray:
    return np.stack([f.codes for f in frames]) if frames else np.zeros((0, 16), dtype=np.int64)


@pytest.fixture(scope="module", params=["eager", "static"])
def eos_engine(request, eos_tts):
    engine = Engine(eos_tts, max_streams=4, static_frames=request.param == "static")
    yield engine
    engine.close()


_solo_cache: dict = {}


def solo(engine: Engine, request: SpeechRequest) -> list[AudioFrame]:
    key = (id(engine), request.text, request.seed, request.sampling, request.max_frames, request.stop_on_eos)
    if key not in _solo_cache:
        frames, finals, _ = run_together(engine, [Spec(request)])
        assert finals[0].error is None
        _solo_cache[key] = frames[0]
    return _solo_cache[key]


def assert_equal_solo(engine: Engine, request: SpeechRequest, frames: list[AudioFrame]) -> None:
    alone = solo(engine, request)
    np.testing.assert_array_equal(codes(frames), codes(alone[: len(frames)]))
    np.testing.assert_allclose(np.concatenate([f.audio for f in frames]),
                               np.concatenate([f.audio for f in alone[: len(frames)]]), atol=1e-5)


# ---------------------------------------------------------------------------------------- frame level
@pytest.mark.parametrize("static", [False, True], ids=["eager", "static"])
def test_free_rows_are_inert(eos_tts, eos_voice, static):
    """Slots 0 and 2 of 4 freed (slot 0 right after choosing the end token): their rows in the next
    frames are all 0, and so is their codebook 0, while slots 1 and 3 run on."""
    pool = SlotPool(eos_tts, slots=4, max_context=512, static=static)
    step = FrameStep(eos_tts, pool)
    with torch.inference_mode():
        prompt = build_prompt(SpeechRequest(TEXT, voice=eos_voice), eos_tts.config, eos_tts.tokenizer,
                              eos_tts.talker, eos_tts.code_predictor)
    for slot in range(4):
        generator = torch.Generator().manual_seed(slot)
        settings = SlotSettings(SamplingParams(), generator, 20, True, prompt.feed)
        step.prefill(slot, prompt, settings)
    pool.last_token[0] = EOS  # as if slot 0's utterance had just chosen the end token
    pool.release(0)
    pool.release(2)
    for _ in range(3):
        if static:
            step.begin_static_frame(4)
            frame, token = step.static_frame(4, 512)
            step.end_static_frame()
        else:
            frame = step.predict_frame()
            token = step.advance(frame)
        assert frame.shape == (4, 16)
        assert frame[[0, 2]].eq(0).all() and token[[0, 2]].eq(0).all()
        assert pool.last_token[[0, 2]].eq(0).all()
        assert frame[[1, 3]].ne(0).any()  # the running rows are real


def test_codec_stage_rejects_a_row_alone(tiny_tts):
    """A row with an id outside [0, 2048) is returned as rejected and decoded as silence; the other rows'
    audio is what they decode to without it."""
    stage, reference = CodecStage(tiny_tts, 3), CodecStage(tiny_tts, 3)
    rng = np.random.default_rng(0)
    for slot in range(3):
        stage.start(slot, None)
        reference.start(slot, None)
    for step in range(3):
        frame = torch.from_numpy(rng.integers(0, 2048, size=(3, 16)))
        clean = frame.clone()
        if step == 1:
            frame[1, 0] = EOS  # the end token, as the bug fed it
            clean[1] = 0
        audio, rejected = stage.decode(frame)
        expected, none = reference.decode(clean)
        assert rejected == ([1] if step == 1 else []) and none == []
        np.testing.assert_array_equal(audio, expected)
    _, rejected = stage.decode(torch.full((2, 16), -1))
    assert rejected == [0, 1]


# ---------------------------------------------------------------------------------------- engine level
def test_end_token_beside_running_streams(eos_engine, eos_tts, eos_voice, parity_fixtures):
    """The official greedy case ends on the end token after 4 frames (its codes are the official ones)
    in the lowest slot while three streams run on; each of them completes and equals its solo run."""
    others = [long_request(eos_voice, seed, frames) for seed, frames in ((1, 9), (2, 12), (3, 7))]
    specs = [Spec(eos_request(eos_tts, eos_voice)), *map(Spec, others)]
    frames, finals, log = run_together(eos_engine, specs)
    assert [f.error for f in finals] == [None] * 4
    assert finals[0].frames == 4 and not finals[0].truncated
    np.testing.assert_array_equal(codes(frames[0]), parity_fixtures.load_array("eos_xvec_greedy/codes"))
    end = next(k for k, (i, e) in enumerate(log) if i == 0 and isinstance(e, Finished))
    assert any(i == 2 and isinstance(e, AudioFrame) for i, e in log[end:])  # a higher slot ran on after it
    for request, got, done in zip(others, frames[1:], finals[1:], strict=True):
        assert done.truncated and done.frames == len(got) == request.max_frames
        assert_equal_solo(eos_engine, request, got)


POSITIONS = {"lowest": 0, "middle": 1, "highest": 2}
REASONS = ("end_token", "budget", "cancel", "error")


@pytest.mark.parametrize("reason", REASONS)
@pytest.mark.parametrize("position", POSITIONS)
def test_slot_freed_while_others_run(eos_engine, eos_tts, eos_voice, position, reason):
    """Three jobs in slots 0, 1, 2; the one at `position` ends early by `reason`, the other two run on
    (the job in the highest slot is admitted last) and equal their solo runs."""
    early_index = POSITIONS[position]
    specs = [Spec(long_request(eos_voice, 10 + i, frames=10)) for i in range(3)]
    early = specs[early_index]
    if reason == "end_token":
        early.request = eos_request(eos_tts, eos_voice)
    elif reason == "budget":
        early.request = long_request(eos_voice, 20, frames=3)
    elif reason == "cancel":
        early.cancel_after = 1
    else:
        early.bad_code_at = 2
    frames, finals, log = run_together(eos_engine, specs)

    done = finals[early_index]
    if reason == "end_token":
        assert done.error is None and not done.truncated and done.frames == len(frames[early_index]) == 4
    elif reason == "budget":
        assert done.error is None and done.truncated and done.frames == len(frames[early_index]) == 3
    elif reason == "cancel":
        assert done.cancelled and done.error is None and len(frames[early_index]) <= done.frames
    else:
        assert done.error == "internal error while decoding audio" and len(frames[early_index]) == 2
    if reason != "cancel":  # what the early job heard is its solo run's start
        assert_equal_solo(eos_engine, early.request, frames[early_index][:2])

    end = next(k for k, (i, e) in enumerate(log) if i == early_index and isinstance(e, Finished))
    for i, spec in enumerate(specs):
        if i == early_index:
            continue
        assert finals[i].error is None and finals[i].truncated, (i, finals[i])
        assert len(frames[i]) == finals[i].frames == 10
        assert_equal_solo(eos_engine, spec.request, frames[i])
        assert any(j == i and isinstance(e, AudioFrame) for j, e in log[end:])  # it ran on after
