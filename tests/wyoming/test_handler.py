"""`makima-tts wyoming` driven by the `wyoming` package's own AsyncTcpClient over loopback TCP: describe,
one-shot and streaming synthesis (audio before the last text chunk), cancel by disconnect, bad events."""

from __future__ import annotations

import asyncio

import httpx
from server_helpers import run
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeVoice,
)
from wyoming_helpers import WyomingProcess, client, read_until

FRAME_BYTES = 24000 * 80 // 1000 * 2  # one 80 ms frame of PCM16 at 24 kHz


def test_describe_announces_our_voices_languages_and_streaming(wyoming):
    async def main():
        async with client(wyoming) as c:
            await c.write_event(Describe().event())
            return Info.from_event((await read_until(c, "info"))[-1])

    info = run(main())
    (program,) = info.tts
    assert program.name == "makima-tts" and program.supports_synthesize_streaming and program.installed
    voices = {v.name: v for v in program.voices}
    assert "default" in voices
    assert {"en", "zh", "de", "ja"} <= set(voices["default"].languages) and "auto" not in voices["default"].languages


def test_one_shot_synthesis_streams_audio_start_chunks_stop(wyoming):
    async def main():
        async with client(wyoming) as c:
            await c.write_event(Synthesize(text="Hello from Home Assistant.", voice=SynthesizeVoice(name="default"))
                                .event())
            return await read_until(c, "audio-stop", "error")

    events = run(main())
    assert [e.type for e in events[:1]] == ["audio-start"] and events[-1].type == "audio-stop"
    start = AudioStart.from_event(events[0])
    assert (start.rate, start.width, start.channels) == (24000, 2, 1)
    chunks = [AudioChunk.from_event(e) for e in events[1:-1]]
    assert len(chunks) == 12 and all(len(ch.audio) == FRAME_BYTES for ch in chunks)  # max_frames=12
    assert [ch.timestamp for ch in chunks] == [80 * i for i in range(12)]
    assert AudioStop.from_event(events[-1]).timestamp == 960


def test_streaming_text_is_one_utterance_and_audio_starts_before_the_last_chunk(wyoming):
    async def main():
        async with client(wyoming) as c:
            await c.write_event(SynthesizeStart(voice=SynthesizeVoice(language="en-US")).event())
            await c.write_event(SynthesizeChunk(text="Sure, the weather in Paris ").event())
            await c.write_event(SynthesizeChunk(text="is sunny. ").event())
            before_last = await read_until(c, "audio-chunk")  # audio while the text is still open
            await c.write_event(SynthesizeChunk(text="Take sunglasses.").event())
            await c.write_event(Synthesize(text="Sure, the weather in Paris is sunny. Take sunglasses.").event())
            await c.write_event(SynthesizeStop().event())
            rest = await read_until(c, "synthesize-stopped")
            return before_last, rest

    before_last, rest = run(main())
    events = before_last + rest
    types = [e.type for e in events]
    print("streaming synthesis:", [f"{t}" for t in types])
    assert types[:2] == ["audio-start", "audio-chunk"]
    assert types.count("audio-start") == 1 and types.count("audio-stop") == 1  # one utterance
    assert types[-2:] == ["audio-stop", "synthesize-stopped"] and "error" not in types
    assert set(types[1:-2]) == {"audio-chunk"}


def test_disconnect_cancels_and_the_server_stays_healthy(start_bridge):
    srv, proc = start_bridge(max_frames=150)  # about 4 s of generation: cut off well before its end

    def metric(name: str) -> float:
        text = httpx.get(f"{srv.http}/metrics").text
        return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))

    async def main():
        c = client(proc)
        await c.connect()
        await c.write_event(Synthesize(text=" ".join(["A very long story about a fox."] * 40)).event())
        await read_until(c, "audio-chunk")
        await c.disconnect()  # mid-utterance
        while httpx.get(f"{srv.http}/ready").json()["sessions"]:
            await asyncio.sleep(0.05)  # until the bridge ended its session (the run() guard bounds it)
        cut = metric('tts_utterances_total{outcome="cancelled"') + metric('tts_utterances_total{outcome="disconnect"')
        async with client(proc) as again:  # the next client is served as usual
            await again.write_event(Synthesize(text="Still working.").event())
            events = await read_until(again, "audio-stop", "error")
        return cut, events

    cut, events = run(main())
    assert cut == 1
    assert events[0].type == "audio-start" and events[-1].type == "audio-stop"


def test_bad_events_are_answered_with_error_events(wyoming):
    async def main():
        answers = []
        async with client(wyoming) as c:
            for event in (SynthesizeChunk(text="orphan").event(), SynthesizeStop().event(),
                          Event(type="synthesize", data={"voice": {"name": "default"}}),
                          Event(type="synthesize", data={"text": "   "}),
                          Synthesize(text="Hi.", voice=SynthesizeVoice(name="nobody")).event()):
                await c.write_event(event)
                answers.append(Error.from_event((await read_until(c, "error", "audio-start"))[-1]))
            await c.write_event(SynthesizeStart().event())
            await c.write_event(SynthesizeStart().event())
            answers.append(Error.from_event((await read_until(c, "error"))[-1]))
            await c.write_event(SynthesizeStop().event())
            await read_until(c, "synthesize-stopped")  # an empty stream is answered too
            await c.write_event(Event(type="synthesize-start", data={"voice": 5}))
            answers.append(Error.from_event((await read_until(c, "error"))[-1]))
            await c.write_event(Synthesize(text="After the errors.").event())
            after = await read_until(c, "audio-stop", "error")
        return answers, after

    answers, after = run(main())
    orphan, stop, no_text, blank, voice, twice, malformed = answers
    assert {a.code for a in (orphan, stop, no_text, blank, twice, malformed)} == {"BAD_EVENT"}
    assert "malformed synthesize-start" in malformed.text
    assert "synthesize-start" in orphan.text and "string 'text'" in no_text.text
    assert voice.code == "VOICE_NOT_FOUND" and "nobody" in voice.text
    assert after[-1].type == "audio-stop"  # the connection stays usable


def test_an_unreachable_server_is_an_error_event():
    proc = WyomingProcess("--url", "http://127.0.0.1:9")  # nothing listens on the discard port

    async def main():
        async with client(proc) as c:
            await c.write_event(Describe().event())
            return Error.from_event((await read_until(c, "error", "info"))[-1])

    try:
        error = run(main())
    finally:
        proc.stop()
    assert error.code == "CONNECTION_FAILED" and "127.0.0.1:9" in error.text
