"""A bounded randomized run of the engine on the `base_eos` checkpoint, where utterances end on the end
token at different frames as real ones do: many short seeded utterances arriving and leaving, budgets,
cancels in flight and before admission, x-vector and ICL prompts, more jobs than slots, batched and
chunked prefills (the solo runs prefill alone, unchunked).

Bounded by count (utterances), not by wall-clock time; the driver reacts to delivered events only. It
asserts no error terminal, exactly one terminal per job and nothing after it, frames in order, and codes
(and audio) equal to solo runs for a sample of utterances.
"""

from __future__ import annotations

import queue
from dataclasses import dataclass, field

import numpy as np
import pytest

from makima_tts.engine.engine import Engine
from makima_tts.engine.types import AudioFrame, Finished, SpeechRequest

UTTERANCES = 160
MAX_STREAMS = 4
SOLO_SAMPLE = 10
TIMEOUT = 120  # a hang guard for each wait, not a timing check
WORDS = "hello world this is a tiny test of speech that ends when the model says so".split()


@dataclass
class Planned:
    request: SpeechRequest
    cancel_after: int | None = None  # cancel once this frame index has arrived (-1: right after submit)
    frames: list[AudioFrame] = field(default_factory=list)
    final: Finished | None = None
    job: object = None


def plan(rng: np.random.Generator, voices: list) -> Planned:
    text = " ".join(rng.choice(WORDS, size=int(rng.integers(2, 9)))) + "."
    request = SpeechRequest(text, language="english", voice=voices[int(rng.random() < 0.2)], seed=int(rng.integers(1 << 30)),
                            max_frames=int(rng.integers(1, 7)) if rng.random() < 0.25 else None)
    roll = rng.random()
    cancel_after = None if roll < 0.7 else -1 if roll < 0.8 else int(rng.integers(0, 5))
    return Planned(request, cancel_after)


@pytest.fixture(scope="module")
def voices(eos_tts, parity_fixtures):
    audio = parity_fixtures.load_array("ref24/audio")
    return [eos_tts.create_voice_prompt(audio, 24000),
            eos_tts.create_voice_prompt(audio, 24000, ref_text="reference transcript for voice cloning")]


@pytest.mark.parametrize("static", [False, True], ids=["eager", "static"])
def test_randomized_arrivals_departures_and_end_tokens(eos_tts, voices, static):
    rng = np.random.default_rng(2026 + static)
    # the static run also prefills in chunks of 5 rows beside running streams: prompts go in between static
    # frames, whose free rows write into the pool
    engine = Engine(eos_tts, max_streams=MAX_STREAMS, static_frames=static, prefill_chunk=5 if static else None)
    events: queue.Queue = queue.Queue()
    planned: list[Planned] = []
    open_jobs: set[int] = set()
    ended_beside_others = 0  # end-token terminals while another utterance was mid-stream
    try:
        target = 1
        while len(planned) < UTTERANCES or open_jobs:
            while len(planned) < UTTERANCES and len(open_jobs) < target:
                p = plan(rng, voices)
                i = len(planned)
                planned.append(p)
                open_jobs.add(i)
                p.job = engine.submit(p.request, lambda e, i=i: events.put((i, e)))
                if p.cancel_after == -1:
                    p.job.cancel()
            i, event = events.get(timeout=TIMEOUT)
            p = planned[i]
            assert p.final is None, f"utterance {i}: an event after its terminal"
            if isinstance(event, AudioFrame):
                assert event.index == len(p.frames)
                p.frames.append(event)
                if p.cancel_after == event.index:
                    p.job.cancel()
                continue
            p.final = event
            open_jobs.discard(i)
            if not (event.truncated or event.cancelled or event.error):
                ended_beside_others += any(planned[j].frames for j in open_jobs)
            target = int(rng.integers(1, 2 * MAX_STREAMS))  # sometimes more than the slots: a queue forms
    finally:
        engine.close()
        engine = None

    finals = [p.final for p in planned]
    assert [f.error for f in finals if f.error] == []
    kinds = {
        "end_token": sum(not (f.truncated or f.cancelled) for f in finals),
        "budget": sum(f.truncated for f in finals),
        "cancelled": sum(f.cancelled for f in finals),
    }
    print(f"\n{UTTERANCES} utterances ({'static' if static else 'eager'}): terminals {kinds}, "
          f"{ended_beside_others} ended on the end token beside a running stream, "
          f"{sum(len(p.frames) for p in planned)} frames")
    assert kinds["end_token"] >= UTTERANCES // 3 and ended_beside_others >= 10 and kinds["cancelled"] >= 10
    for p in planned:  # the final frame of a job that ended by itself, and only it, is marked `last`
        if not p.final.cancelled:
            assert p.final.frames == len(p.frames) >= 1
            assert [f.last for f in p.frames] == [False] * (len(p.frames) - 1) + [True]
        else:
            assert not any(f.last for f in p.frames)

    solo_engine = Engine(eos_tts, max_streams=MAX_STREAMS, static_frames=static)
    try:
        sample = [p for p in planned if p.frames][:: max(1, len(planned) // SOLO_SAMPLE)][:SOLO_SAMPLE]
        for p in sample:
            *frames, event = solo_engine.generate(p.request, timeout=TIMEOUT)
            assert event.error is None
            if not p.final.cancelled:
                assert len(frames) == len(p.frames)
            got = np.stack([f.codes for f in p.frames])
            np.testing.assert_array_equal(got, np.stack([f.codes for f in frames[: len(p.frames)]]))
            np.testing.assert_allclose(np.concatenate([f.audio for f in p.frames]),
                                       np.concatenate([f.audio for f in frames[: len(p.frames)]]), atol=1e-5)
    finally:
        solo_engine.close()
