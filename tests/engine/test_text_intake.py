"""Streamed text through the engine: an utterance whose text arrives in pieces makes exactly the codes of
the same text given whole (streaming-text mode, which tests/parity ties to the official package).

Timing is driven by observable events, never sleeps: a second, long utterance (the driver) runs in the
same engine, and each further piece of the streamed text is appended when the driver's frame k arrives
(random k). The streamed slot so runs out of text mid-word and mid-sentence, waits several frames (sits
out lockstep steps while the driver goes on), and resumes; its random generator, caches, codebook 0 and
codec state must come out of every wait untouched. Eager and static-shape frames both.
"""

import queue
import random
import threading
from dataclasses import replace

import numpy as np
import pytest

from makima_tts.engine.engine import Engine
from makima_tts.engine.types import AudioFrame, Finished, SamplingParams, SpeechRequest

TEXTS = [
    "Hello world. This is a tiny test of speech, with a long first sentence that keeps going on.",
    "你好，世界！这是一个测试。",
    "Call me at 555-0142 at 9:30, or at 10:45 tomorrow.",
    "Emoji 🎉 time ✨ with   runs of   spaces\nand a new line.",
    "Numbers 3.14159 and 2.71828; café naïve.",
    "Short one.",
]
SPLITS_PER_TEXT = 2


def split(text: str, rng: random.Random) -> list[str]:
    cuts = sorted(rng.sample(range(1, len(text)), k=min(len(text) - 1, rng.randint(3, 9))))
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def request(text: str, voice, seed: int, greedy: bool, **extra) -> SpeechRequest:
    sampling = SamplingParams(do_sample=not greedy, subtalker_dosample=not greedy)
    return SpeechRequest(text, voice=voice, sampling=sampling, seed=seed, **extra)


def collect(events: queue.SimpleQueue) -> tuple[np.ndarray, np.ndarray, Finished]:
    frames = []
    while not isinstance(event := events.get(timeout=120), Finished):
        frames.append(event)
    if not frames:
        return np.zeros((0, 16)), np.zeros(0), event
    return np.stack([f.codes for f in frames]), np.concatenate([f.audio for f in frames]), event


def whole(engine: Engine, req: SpeechRequest) -> tuple[np.ndarray, np.ndarray, Finished]:
    events = queue.SimpleQueue()
    engine.submit(req, events.put)
    return collect(events)


def trickled(engine: Engine, req: SpeechRequest, pieces: list[str], rng: random.Random):
    """`pieces[0]` at submit, piece i once the driver's frame at[i] (counted from the submit) has arrived
    (the last piece closes the text); -> (codes, audio, Finished, frames the streamed slot sat out)."""
    at = np.cumsum([0] + [rng.choice((0, 1, 4, 12)) for _ in pieces[1:]]).tolist()
    schedule = list(zip(at[1:], pieces[1:], strict=True))
    log: list[str] = []  # "d"/"s": a frame of the driver / of the streamed utterance, in delivery order
    streamed: queue.SimpleQueue = queue.SimpleQueue()
    started = threading.Event()
    holder = {}

    def driver_sink(event):  # codec thread
        if not isinstance(event, AudioFrame):
            return
        if "job" not in holder:
            holder["start"] = event.index
            started.set()
            return
        log.append("d")
        while schedule and schedule[0][0] <= event.index - holder["start"]:
            _, piece = schedule.pop(0)
            holder["job"].append_text(piece, close=not schedule)

    def streamed_sink(event):
        if isinstance(event, AudioFrame):
            log.append("s")
        streamed.put(event)

    driver = engine.submit(SpeechRequest("driver " * 10, voice=req.voice, seed=99, max_frames=400,
                                         stop_on_eos=False), driver_sink)
    assert started.wait(timeout=120)
    holder["job"] = engine.submit(replace(req, text=pieces[0], text_open=True), streamed_sink)
    codes, audio, done = collect(streamed)
    driver.cancel()
    ours = [i for i, who in enumerate(log) if who == "s"]
    sat_out = log[ours[0] : ours[-1]].count("d") - (len(ours) - 1) if ours else 0
    return codes, audio, done, sat_out


@pytest.fixture(scope="module", params=["eager", "static"])
def engine(request, tiny_tts):
    engine = Engine(tiny_tts, max_streams=2, static_frames=request.param == "static")
    yield engine
    engine.close()


@pytest.mark.parametrize("index", range(len(TEXTS)))
def test_trickled_text_makes_the_codes_of_the_whole_text(engine, voice, icl_voice, index):
    text, rng = TEXTS[index], random.Random(index)
    sat_out = 0
    for n in range(SPLITS_PER_TEXT):
        clone = icl_voice if n % 2 else voice  # ICL: the prefill takes several text tokens
        tokens = len(engine.tts.tokenizer.assistant_ids(text)) - 8
        # past the text's end (its E row, then pads); the short text: the default budget, to its end token
        extra = {} if index == len(TEXTS) - 1 else {"max_frames": tokens + 6, "stop_on_eos": False}
        req = request(text, clone, seed=1000 * index + n, greedy=index % 3 == 0, **extra)
        expected, expected_audio, expected_done = whole(engine, req)
        pieces = split(text, rng)
        codes, audio, done, waited = trickled(engine, req, pieces, rng)
        assert done == expected_done, pieces
        np.testing.assert_array_equal(codes, expected, err_msg=repr(pieces))
        # the codec state of a waiting slot is kept too (decoded beside the driver: within conv rounding)
        np.testing.assert_allclose(audio, expected_audio, atol=1e-5, err_msg=repr(pieces))
        assert len(codes) > 0
        sat_out += waited
    assert sat_out > 0  # the streamed slot really ran out of text and waited while the driver went on
