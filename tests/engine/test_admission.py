"""Admission (engine/admission.py through the real engine): a burst is prefilled in one pass, a long
prompt in chunks between the steps of running streams, the old policy one job per step, and in every
case each utterance's fp32 codes are those it gets alone. Also the "first audio first" pieces: a frame's
first frames are delivered before the running streams' rows, and the lead rule the engine waits by.
"""

import math
import threading
from collections import deque

import numpy as np
import pytest

from makima_tts.engine.admission import AdmissionPolicy, Admissions
from makima_tts.engine.codec_stage import FrameRow
from makima_tts.engine.engine import Engine
from makima_tts.engine.job import first_audio_waits
from makima_tts.engine.prompt import build_prompt
from makima_tts.engine.types import AudioFrame, Finished, SamplingParams, SpeechRequest

TIMEOUT = 120  # a hang guard for each wait, not a timing check


def sampled(tts, requests, frames=5):
    """Greedy and seeded rows alternate; a fixed frame count, so every run is the same length."""
    greedy = SamplingParams.from_defaults(tts.config.generation, greedy=True)
    return [SpeechRequest(**{**r.__dict__, "sampling": greedy if i % 2 else None, "seed": 100 + i,
                             "max_frames": frames, "stop_on_eos": False}) for i, r in enumerate(requests)]


def codes_of(events):
    assert isinstance(events[-1], Finished) and events[-1].error is None, events[-1]
    return np.stack([e.codes for e in events[:-1]])


class Collector:
    """Sinks for several jobs; `log` keeps (name, event) in delivery order."""

    def __init__(self):
        self.log, self.lock = [], threading.Lock()
        self.finished = {}

    def sink(self, name):
        def put(event):
            with self.lock:
                self.log.append((name, event))
                if isinstance(event, Finished):
                    self.finished.setdefault(name, threading.Event()).set()
        with self.lock:
            self.finished.setdefault(name, threading.Event())
        return put

    def wait(self, names):
        for name in names:
            assert self.finished[name].wait(TIMEOUT), f"{name} never finished"

    def events(self, name):
        return [event for n, event in self.log if n == name]


def solo_codes(engine, requests):
    return [codes_of(list(engine.generate(r, timeout=TIMEOUT))) for r in requests]


def submit_together(engine, requests, collector):
    """All at once: the engine thread takes queued jobs under this lock, so it sees the whole burst."""
    with engine._cv:
        for i, request in enumerate(requests):
            engine.submit(request, collector.sink(i))
    collector.wait(range(len(requests)))


@pytest.mark.parametrize("model", ["base", "custom_voice"])
def test_a_burst_is_prefilled_in_one_pass_with_the_codes_of_solo_runs(model, tiny_tts, custom_tts, base_batch,
                                                                      custom_batch):
    tts, batch = (tiny_tts, base_batch) if model == "base" else (custom_tts, custom_batch)
    requests = sampled(tts, batch)
    engine = Engine(tts, max_streams=8)
    try:
        alone = solo_codes(engine, requests)
        engine.timer.enable()
        collector = Collector()
        submit_together(engine, requests, collector)
        assert len(engine.timer.samples["prefill"]) == 1  # eight prompts, one talker pass
        for i, expected in enumerate(alone):
            np.testing.assert_array_equal(codes_of(collector.events(i)), expected)
    finally:
        engine.close()


def test_a_long_prompt_is_prefilled_in_chunks_between_steps(tiny_tts, voice, icl_voice):
    chunk = 4
    running = SpeechRequest("Keep talking while others join.", voice=voice, seed=1, max_frames=60, stop_on_eos=False)
    joining = sampled(tiny_tts, [SpeechRequest("A long clone prompt with its whole text up front.", voice=icl_voice,
                                               text_mode="non_streaming"),
                                 SpeechRequest("Short one.", voice=voice)])
    long_rows = build_prompt(joining[0], tiny_tts.config, tiny_tts.tokenizer, tiny_tts.talker,
                             tiny_tts.code_predictor).embeds.shape[1]
    engine = Engine(tiny_tts, max_streams=4, prefill_chunk=chunk, reuse_prefixes=False)  # every row prefilled
    try:
        alone = solo_codes(engine, [running, *joining])
        collector = Collector()
        started = threading.Event()
        sink = collector.sink("running")
        engine.submit(running, lambda e: (sink(e), started.set()))
        assert started.wait(TIMEOUT)
        with collector.lock:
            collector.log.append(("joined", None))
        for i, request in enumerate(joining):
            engine.submit(request, collector.sink(i))
        collector.wait(["running", 0, 1])
        for name, expected in zip(["running", 0, 1], alone, strict=True):
            np.testing.assert_array_equal(codes_of(collector.events(name)), expected)
        names = [name for name, _ in collector.log]
        joined, first_long = names.index("joined"), names.index(0)
        # the running stream kept making frames while the long prompt went in, a chunk per step
        assert names[joined:first_long].count("running") >= math.ceil(long_rows / chunk) - 1
    finally:
        engine.close()


@pytest.mark.parametrize("model", ["base", "custom_voice"])
def test_reused_voice_prefixes_give_the_codes_of_fresh_prefills(model, tiny_tts, custom_tts, base_batch, custom_batch):
    tts, batch = (tiny_tts, base_batch) if model == "base" else (custom_tts, custom_batch)
    requests = sampled(tts, batch)
    fresh = Engine(tts, max_streams=8, reuse_prefixes=False)
    try:
        expected = solo_codes(fresh, requests)
    finally:
        fresh.close()
    engine = Engine(tts, max_streams=8)
    try:
        first = solo_codes(engine, requests)  # each voice's first utterance computes and keeps its prefix
        collector = Collector()
        submit_together(engine, requests, collector)  # now every prompt starts from a kept prefix
        assert engine.prefixes.hits >= len(requests)
        for i, codes in enumerate(expected):
            np.testing.assert_array_equal(first[i], codes)
            np.testing.assert_array_equal(codes_of(collector.events(i)), codes)
    finally:
        engine.close()


def test_one_per_step_policy_admits_a_job_per_step_with_the_same_codes(tiny_tts, base_batch):
    requests = sampled(tiny_tts, base_batch[:3])
    engine = Engine(tiny_tts, max_streams=4, admission=AdmissionPolicy.ONE_PER_STEP)
    try:
        alone = solo_codes(engine, requests)
        engine.timer.enable()
        collector = Collector()
        submit_together(engine, requests, collector)
        assert len(engine.timer.samples["prefill"]) == 3
        firsts = [next(i for i, (n, e) in enumerate(collector.log) if n == name) for name in range(3)]
        assert firsts == sorted(firsts)  # first come, first admitted
        for i, expected in enumerate(alone):
            np.testing.assert_array_equal(codes_of(collector.events(i)), expected)
    finally:
        engine.close()


def test_cancel_while_waiting_for_prefill(tiny_tts, voice):
    engine = Engine(tiny_tts, max_streams=2, prefill_chunk=2)
    try:
        collector = Collector()
        started = threading.Event()
        sink = collector.sink("running")
        engine.submit(SpeechRequest("Running.", voice=voice, max_frames=40, stop_on_eos=False),
                      lambda e: (sink(e), started.set()))
        assert started.wait(TIMEOUT)
        job = engine.submit(SpeechRequest("A prompt long enough to take several chunks.", voice=voice,
                                          text_mode="non_streaming"), collector.sink("late"))
        job.cancel()
        collector.wait(["late", "running"])
        (finished,) = collector.events("late")
        assert finished.cancelled and finished.frames == 0
        assert engine.busy_streams == 0
    finally:
        engine.close()


def test_plan_takes_rows_first_come_first_served():
    class Part:
        def __init__(self, slot, remaining):
            self.slot, self.remaining = slot, remaining

    admissions = Admissions(AdmissionPolicy.BATCHED, chunk=10)
    parts = [Part(0, 7), Part(1, 30), Part(2, 2)]
    for part in parts:
        admissions.add(f"job{part.slot}", part)
    assert [(p.slot, n) for _, p, n in admissions.plan(streams_running=True)] == [(0, 7), (1, 3)]
    assert [(p.slot, n) for _, p, n in admissions.plan(streams_running=False)] == [(0, 7), (1, 30), (2, 2)]
    assert admissions.reserved() == {0, 1, 2} and admissions.take_count(5) == 5
    assert Admissions(AdmissionPolicy.ONE_PER_STEP, chunk=10).take_count(5) == 1
    with pytest.raises(ValueError, match="at least 1"):
        Admissions(AdmissionPolicy.BATCHED, chunk=0)


def test_take_gives_free_unreserved_slots_in_arrival_order_and_drops_cancelled_jobs():
    class Queued:
        def __init__(self, name, cancelled=False, ready=True):
            self.name, self.cancelled, self.ready = name, cancelled, ready

    class Part:
        slot, remaining = 1, 4

    admissions = Admissions(AdmissionPolicy.BATCHED, chunk=10)
    admissions.add("reserved", Part())
    settings = ["running", None, None, None]  # slot 0 generating, slot 1 reserved: 2 and 3 are free
    assert admissions.free_slots(settings) == [2, 3]
    a, gone, waiting, b, c = (Queued("a"), Queued("gone", cancelled=True), Queued("waiting", ready=False),
                              Queued("b"), Queued("c"))
    queue = deque([a, gone, waiting, b, c])
    taken, dropped = admissions.take(queue, settings, lambda job: job.ready)
    assert taken == [(a, 2), (b, 3)] and dropped == [gone]
    assert list(queue) == [waiting, c]  # not ready yet, or no slot left: still queued, in order
    taken, _ = Admissions(AdmissionPolicy.ONE_PER_STEP, chunk=10).take(queue, settings, lambda job: True)
    assert taken == [(waiting, 1)] and list(queue) == [c]  # one per step, into the lowest free slot



def test_lead_and_the_first_audio_wait(tiny_tts, voice):
    engine = Engine(tiny_tts, max_streams=1)
    try:
        events = []
        job = engine.submit(SpeechRequest("Lead.", voice=voice, max_frames=5, stop_on_eos=False), events.append)
        assert job.done.wait(TIMEOUT)
    finally:
        engine.close()
    assert sum(isinstance(e, AudioFrame) for e in events) == 5
    assert job.audio_sent_s == pytest.approx(5 * 0.08)
    assert job.lead(job.first_audio_at + 0.1) == pytest.approx(0.3)
    newcomer, running = FrameRow(1, object(), 0), FrameRow(0, job, 3)
    assert first_audio_waits((running, newcomer), job.first_audio_at + 0.1, step_s=0.2)  # 0.3 s buffered
    assert not first_audio_waits((running, newcomer), job.first_audio_at + 0.25, step_s=0.2)  # 0.15 s: no wait
    assert not first_audio_waits((running,), job.first_audio_at, step_s=0.0)  # no first frame


def test_jobs_arriving_during_the_first_prefill_share_its_first_step(tiny_tts, voice, icl_voice):
    requests = sampled(tiny_tts, [SpeechRequest("The first one in.", voice=voice),
                                  SpeechRequest("Right behind it.", voice=icl_voice, language="english"),
                                  SpeechRequest("And a third.", voice=voice)])
    engine = Engine(tiny_tts, max_streams=4)
    try:
        alone = solo_codes(engine, requests)
        collector, steps = Collector(), []
        prefill, put = engine._frames.prefill_batch, engine._codec.put

        def prefill_and_let_others_in(parts, prefixes):
            if not steps and len(collector.finished) == 1:  # the first pass: the others arrive meanwhile
                for i, request in enumerate(requests[1:], start=1):
                    engine.submit(request, collector.sink(i))
            return prefill(parts, prefixes)

        def record(message):
            if hasattr(message, "rows"):
                steps.append([(row.job.request.text, row.index) for row in message.rows])
            put(message)

        engine._frames.prefill_batch, engine._codec.put = prefill_and_let_others_in, record
        engine.submit(requests[0], collector.sink(0))
        collector.wait(range(3))
        assert sorted(steps[0]) == sorted((r.text, 0) for r in requests)  # one first step for all three
        for i, expected in enumerate(alone):
            np.testing.assert_array_equal(codes_of(collector.events(i)), expected)
    finally:
        engine.close()
