"""The asyncio bridge: one engine job as an async iterator, for code on an event loop (the server).

The job's sink runs on the engine's codec thread and never blocks: it hands each event to the loop with
`loop.call_soon_threadsafe`, into an unbounded asyncio.Queue read by the iterator. The iterator yields
the AudioFrames, then the Finished, and stops; leaving it early (break, an exception, a cancelled task,
`aclose()`) cancels the job. No model work runs on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from .engine import Engine
from .job import Job
from .types import EngineEvent, Finished, SpeechRequest


def stream_events(engine: Engine, request: SpeechRequest) -> AsyncIterator[EngineEvent]:
    """Frames of one engine job (submitted now) as they are made, then its `Finished`; leaving early
    cancels the job."""
    return start_stream(engine, request)[1]


def start_stream(engine: Engine, request: SpeechRequest) -> tuple[Job, AsyncIterator[EngineEvent]]:
    """Submit now: the job (e.g. to `append_text` to it) and its events, as `stream_events` gives them."""
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[EngineEvent] = asyncio.Queue()

    def sink(event: EngineEvent) -> None:  # codec thread
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening any more
            loop.call_soon_threadsafe(events.put_nowait, event)

    job = engine.submit(request, sink)
    return job, _events(job, events)


async def _events(job: Job, events: asyncio.Queue[EngineEvent]) -> AsyncIterator[EngineEvent]:
    try:
        while True:
            event = await events.get()
            yield event
            if isinstance(event, Finished):
                return
    finally:
        if not job.done.is_set():
            job.cancel()
