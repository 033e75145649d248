"""stream.py, the asyncio bridge: one job's events in order on the event loop, and leaving early (closing
the iterator, or cancelling the task reading it) cancels the job."""

import asyncio
import contextlib

import pytest

from makima_tts.engine.engine import Engine
from makima_tts.engine.stream import stream_events
from makima_tts.engine.types import AudioFrame, Finished, SpeechRequest

TEXT = "Hello world. This is a tiny test of speech."
TIMEOUT = 60  # a hang guard for each wait, not a timing check


@pytest.fixture(scope="module")
def engine(tiny_tts):
    eng = Engine(tiny_tts, max_streams=2)
    yield eng
    eng.close()


def long_request(voice, frames=400):
    return SpeechRequest(TEXT, voice=voice, max_frames=frames, stop_on_eos=False)


async def slot_freed(engine):
    async with asyncio.timeout(TIMEOUT):
        while engine.busy_streams:
            await asyncio.sleep(0.01)


def test_events_arrive_in_order_then_finished(engine, voice):
    async def main():
        async with asyncio.timeout(TIMEOUT):
            return [event async for event in stream_events(engine, long_request(voice, frames=5))]

    events = asyncio.run(main())
    assert [type(e) for e in events] == [AudioFrame] * 5 + [Finished]
    assert [e.index for e in events[:-1]] == list(range(5))
    assert events[-1].frames == 5 and events[-1].truncated and events[-1].error is None


def test_two_streams_on_one_loop(engine, voice):
    async def collect(frames):
        return [event async for event in stream_events(engine, long_request(voice, frames=frames))]

    async def main():
        async with asyncio.timeout(TIMEOUT):
            return await asyncio.gather(collect(3), collect(6))

    a, b = asyncio.run(main())
    assert [e.index for e in a[:-1]] == [0, 1, 2] and a[-1].frames == 3
    assert [e.index for e in b[:-1]] == list(range(6)) and b[-1].frames == 6


def test_leaving_early_cancels_the_job(engine, voice):
    async def main():
        async with contextlib.aclosing(stream_events(engine, long_request(voice))) as events:
            async with asyncio.timeout(TIMEOUT):
                async for event in events:
                    assert isinstance(event, AudioFrame)
                    if event.index == 1:
                        break
        await slot_freed(engine)

    asyncio.run(main())
    assert engine.busy_streams == 0


def test_cancelling_the_reading_task_cancels_the_job(engine, voice):
    async def read(first):
        async for event in stream_events(engine, long_request(voice)):
            first.set_result(event) if not first.done() else None

    async def main():
        first = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(read(first))
        async with asyncio.timeout(TIMEOUT):
            assert isinstance(await first, AudioFrame)
        assert engine.busy_streams == 1
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await slot_freed(engine)

    asyncio.run(main())
    assert engine.busy_streams == 0
