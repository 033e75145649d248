"""codec_stage.py: the codec thread's messages in order (a job's frames, its one Finished, nothing after),
a failing decode failing only its own rows' jobs, first frames handed over before running rows (and decoded
apart from them), and the primed-state cache of ICL references."""

import threading

import numpy as np
import torch

from makima_tts.engine.codec_stage import (
    CodecStage,
    EndUtterance,
    FirstFrames,
    FrameCodes,
    FrameRow,
    PrimedStates,
    StartUtterance,
    StepVerdict,
    Stop,
)
from makima_tts.engine.job import Job
from makima_tts.engine.types import AudioFrame, Finished, SpeechRequest


class NoEngine:
    on_first_audio = None

    def _wake(self):
        pass


def job_with_log():
    log = []
    return Job(NoEngine(), SpeechRequest("x"), log.append), log


def frame(n, seed):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 2048, size=(n, 16)))


def settled(*last_slots) -> StepVerdict:
    verdict = StepVerdict()
    verdict.settle(last_slots)
    return verdict


def run(stage, messages):
    stage.launch()
    for message in (*messages, Stop()):
        stage.put(message)
    stage.join(timeout=60)


def test_frames_then_one_finished_then_nothing(tiny_tts):
    stage = CodecStage(tiny_tts, 2)
    (a, log_a), (b, log_b) = job_with_log(), job_with_log()
    decoded = threading.Event()
    run(stage, [
        StartUtterance(0, None), StartUtterance(1, None),
        FrameCodes(frame(2, 0), (FrameRow(0, a, 0), FrameRow(1, b, 0)), settled(), decoded=decoded),
        FrameCodes(frame(2, 1), (FrameRow(0, a, 1), FrameRow(1, b, 1)), settled(0)),
        EndUtterance(a, Finished(2)),
        FrameCodes(frame(2, 2), (FrameRow(0, a, 2), FrameRow(1, b, 2)), settled(1)),  # late: a has finished
        EndUtterance(a, Finished(3, cancelled=True)),  # a second terminal is dropped too
        EndUtterance(b, Finished(3)),
    ])
    assert decoded.is_set()
    assert [type(e) for e in log_a] == [AudioFrame, AudioFrame, Finished] and log_a[-1] == Finished(2)
    assert [type(e) for e in log_b] == [AudioFrame] * 3 + [Finished]
    assert [e.index for e in log_b[:-1]] == [0, 1, 2]
    assert [e.last for e in log_a[:-1]] == [False, True] and [e.last for e in log_b[:-1]] == [False, False, True]
    assert a.done.is_set() and b.done.is_set()


def test_a_failing_decode_fails_the_jobs_of_its_rows(tiny_tts):
    stage = CodecStage(tiny_tts, 2)
    (a, log_a), (b, log_b) = job_with_log(), job_with_log()

    def broken(frame, rows, verdict):
        raise RuntimeError("decoder broke")

    stage._deliver = broken
    decoded = threading.Event()
    run(stage, [FrameCodes(frame(1, 0), (FrameRow(0, a, 0),), settled(), decoded=decoded), EndUtterance(b, Finished(0))])
    assert decoded.is_set()  # the generation thread waiting for first audio is released
    assert log_a == [Finished(0, error="internal error while decoding audio")] and a.cancelled
    assert log_b == [Finished(0)] and not b.cancelled


def test_primed_states_are_cached_by_reference_codes(tiny_tts):
    primed = PrimedStates(tiny_tts.codec, size=2)
    codes = [torch.from_numpy(np.random.default_rng(i).integers(0, 2048, size=(5, 16))) for i in range(3)]
    first = primed.get(codes[0], tiny_tts.device)
    assert primed.get(codes[0].clone(), tiny_tts.device) is first  # equal codes, same state
    assert primed.get(codes[1], tiny_tts.device) is not first
    primed.get(codes[0], tiny_tts.device)  # codes[0] used last: codes[1] is the oldest
    primed.get(codes[2], tiny_tts.device)
    assert primed.get(codes[0], tiny_tts.device) is first and len(primed._states) == 2
    assert torch.equal(first.pos, tiny_tts.codec.prime(codes[0]).pos)


def test_first_frames_are_handed_over_before_running_rows(tiny_tts):
    stage = CodecStage(tiny_tts, 3)
    order = []
    jobs = [Job(NoEngine(), SpeechRequest("x"), lambda e, name=name: order.append((name, e.index)))
            for name in ("running", "new", "also running")]
    run(stage, [
        StartUtterance(0, None), StartUtterance(1, None), StartUtterance(2, None),
        FrameCodes(frame(3, 3), (FrameRow(0, jobs[0], 4), FrameRow(1, jobs[1], 0), FrameRow(2, jobs[2], 9)), settled()),
    ])
    assert order == [("new", 0), ("running", 4), ("also running", 9)]
    assert jobs[1].audio_sent_s == 0.08 and jobs[1].first_audio_at is not None  # what Job.lead counts


def test_first_frames_apart_are_decoded_on_their_own_with_the_audio_of_one_decode(tiny_tts):
    """Apart: the newcomer's row is decoded alone, then the running rows; every row's audio and state
    equal one decode of all rows within float noise, over the frame that splits and the frames after."""
    stages = {mode: CodecStage(tiny_tts, 4, first_frames=mode) for mode in (FirstFrames.APART, FirstFrames.TOGETHER)}
    audio = {}
    for mode, stage in stages.items():
        stage.timer.enable()
        got = audio[mode] = []
        jobs = [Job(NoEngine(), SpeechRequest("x"), lambda e, name=name, got=got: got.append((name, e.index, e.audio)))
                for name in ("running", "new", "held")]
        run(stage, [
            StartUtterance(0, None), StartUtterance(1, None), StartUtterance(2, None),
            FrameCodes(frame(3, 4), (FrameRow(0, jobs[0], 0), FrameRow(2, jobs[2], 0)), settled()),
            FrameCodes(frame(3, 5), (FrameRow(0, jobs[0], 1), FrameRow(1, jobs[1], 0)), settled(), held=(2,)),
            FrameCodes(frame(3, 6), (FrameRow(0, jobs[0], 2), FrameRow(1, jobs[1], 1), FrameRow(2, jobs[2], 1)),
                       settled()),
        ])
    # the first frame is all newcomers (nothing to split), the second splits: 1 + 2 + 1 decodes apart
    assert len(stages[FirstFrames.APART].timer.samples["codec"]) == 4
    assert len(stages[FirstFrames.TOGETHER].timer.samples["codec"]) == 3
    apart, together = audio[FirstFrames.APART], audio[FirstFrames.TOGETHER]
    assert [(name, index) for name, index, _ in apart] == [(name, index) for name, index, _ in together]
    assert [(name, index) for name, index, _ in apart][2:4] == [("new", 0), ("running", 1)]  # first frames first
    for (_, _, a), (_, _, b) in zip(apart, together, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    for a, b in zip(stages[FirstFrames.APART].state._tensors(), stages[FirstFrames.TOGETHER].state._tensors(),
                    strict=True):
        torch.testing.assert_close(a[:3], b[:3], atol=1e-5, rtol=1e-4)
