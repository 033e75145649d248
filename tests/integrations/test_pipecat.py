"""MakimaTTSService in a real Pipecat pipeline (Pipeline + PipelineWorker + WorkerRunner) against a real
server on loopback with the tiny checkpoint: text frames in, audio frames out; an interruption cancels
the utterance with playedMs and no audio of it follows; a server restart is survived.

Run with `-s` to see each test's transcript (frames in and out, the interruption)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from pipecat.frames.frames import (
    ErrorFrame,
    Frame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSTextFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.tts_service import TextAggregationMode
from pipecat.utils.errors import ErrorCategory
from pipecat.workers.runner import WorkerRunner
from server_helpers import TIMEOUT, run

from makima_tts.client import Backoff, ClientState, ErrorCode, SpeakError
from makima_tts.integrations.pipecat import MakimaTTSService, error_category
from makima_tts.integrations.playback import Interruption

RATE = 16000  # the pipeline's output rate: the service must ask the server for it
LONG = " ".join(["The quick brown fox jumps over the lazy dog."] * 8)


async def until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.01)


class Recorder(FrameProcessor):
    """Records the frames going one way past it, in order, and lets a test wait for one."""

    def __init__(self, direction: FrameDirection, log: list[str]):
        super().__init__()
        self.direction, self.log = direction, log
        self.frames: list[Frame] = []
        self._arrived = asyncio.Event()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction is self.direction:
            self.frames.append(frame)
            self.log.append(describe("←" if direction is FrameDirection.DOWNSTREAM else "↑", frame))
            self._arrived.set()
        await self.push_frame(frame, direction)

    async def wait_for(self, match: Callable[[Frame], bool]) -> Frame:
        async def first() -> Frame:
            while True:
                if found := next((f for f in self.frames if match(f)), None):
                    return found
                self._arrived.clear()
                await self._arrived.wait()

        return await asyncio.wait_for(first(), TIMEOUT)


def describe(arrow: str, frame: Frame) -> str:
    if isinstance(frame, TTSAudioRawFrame):
        return f"{arrow} TTSAudioRawFrame {len(frame.audio)} B @ {frame.sample_rate} Hz ctx={frame.context_id}"
    detail = getattr(frame, "text", None) or getattr(frame, "error", None) or getattr(frame, "context_id", None)
    return f"{arrow} {type(frame).__name__}" + (f" {str(detail)[:70]!r}" if detail else "")


def transcript(log: list[str]) -> str:
    """The log with each run of audio frames of one context folded into one line."""
    lines: list[str] = []
    for line in log:
        if " TTSAudioRawFrame " in line and lines and lines[-1].split(" ctx=")[-1] == line.split(" ctx=")[-1] \
                and " TTSAudioRawFrame" in lines[-1]:
            head, ctx = lines[-1].rsplit(" ctx=", 1)
            count = int(head.split("×")[1].split(" ")[0]) + 1 if "×" in head else 2
            lines[-1] = f"← TTSAudioRawFrame×{count} (80 ms each) ctx={ctx}"
        else:
            lines.append(line)
    return "\n".join(lines)


class Harness:
    """A running pipeline [upstream recorder, tts, downstream recorder]."""

    def __init__(self, tts: MakimaTTSService):
        self.tts, self.log = tts, []
        self.up = Recorder(FrameDirection.UPSTREAM, self.log)
        self.down = Recorder(FrameDirection.DOWNSTREAM, self.log)
        self.worker = PipelineWorker(Pipeline([self.up, tts, self.down]), cancel_on_idle_timeout=False,
                                     enable_rtvi=False, params=PipelineParams(audio_out_sample_rate=RATE))
        self.runner = WorkerRunner(handle_sigint=False)
        self.started = asyncio.Event()
        self.interruptions: list[Interruption] = []
        self.interrupted = asyncio.Event()

        @self.worker.event_handler("on_pipeline_started")
        async def _started(worker, frame):
            self.started.set()

        @tts.event_handler("on_tts_interrupted")
        async def _interrupted(service, context_id: str, interruption: Interruption):
            self.log.append(f"· on_tts_interrupted ctx={context_id} playedMs={interruption.played_ms:.0f} "
                            f"audioSentMs={interruption.audio_sent_ms:.0f} reason={interruption.reason} "
                            f"heardText={interruption.heard_text!r}")
            self.interruptions.append(interruption)
            self.interrupted.set()

    async def __aenter__(self) -> Harness:
        await self.runner.add_workers(self.worker)
        self._run = asyncio.create_task(self.runner.run())
        await asyncio.wait_for(self.started.wait(), TIMEOUT)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.worker.cancel()
        await asyncio.wait_for(self._run, TIMEOUT)

    async def send(self, *frames: Frame) -> None:
        for frame in frames:
            self.log.append(describe("→", frame))
            await self.worker.queue_frame(frame)

    def audio(self, context_id: str | None = None) -> list[TTSAudioRawFrame]:
        return [f for f in self.down.frames if isinstance(f, TTSAudioRawFrame)
                and (context_id is None or f.context_id == context_id)]

    async def spoken(self, text: str) -> str:
        """Speak a TTSSpeakFrame and wait for the TTSStoppedFrame of its context; its context id."""
        await self.send(TTSSpeakFrame(text))
        said = await self.down.wait_for(lambda f: isinstance(f, TTSTextFrame) and f.text == text)
        await self.down.wait_for(lambda f: isinstance(f, TTSStoppedFrame) and f.context_id == said.context_id)
        return said.context_id


@pytest.mark.parametrize("mode", [TextAggregationMode.SENTENCE, TextAggregationMode.TOKEN])
def test_llm_text_frames_become_one_context_of_audio_frames(start_server, mode):
    srv = start_server(max_frames=6)

    async def main():
        tts = MakimaTTSService(url=srv.ws, text_aggregation_mode=mode)
        async with Harness(tts) as h:
            tokens = ["Sure, ", "the weather ", "in Paris ", "is sunny. ", "Tomorrow ", "it rains."]
            await h.send(LLMFullResponseStartFrame(), *[LLMTextFrame(t) for t in tokens], LLMFullResponseEndFrame())
            stopped = await h.down.wait_for(lambda f: isinstance(f, TTSStoppedFrame))
            await h.down.wait_for(lambda f: isinstance(f, LLMFullResponseEndFrame))
            return h, stopped, tts.client.started

    h, stopped, started = run(main())
    print(f"\n--- Pipecat transcript ({mode.value} aggregation) ---\n" + transcript(h.log))
    assert started.sampleRate == RATE  # the pipeline's output rate, asked of the server
    ctx = stopped.context_id
    kinds = [type(f) for f in h.down.frames if isinstance(f, TTSStartedFrame | TTSAudioRawFrame | TTSStoppedFrame)]
    assert kinds[0] is TTSStartedFrame and kinds[-1] is TTSStoppedFrame and kinds.count(TTSStartedFrame) == 1
    audio = h.audio(ctx)
    assert audio and audio == h.audio()  # one context carries the whole reply
    assert all(f.sample_rate == RATE and f.num_channels == 1 and len(f.audio) % 2 == 0 for f in audio)
    audio_ms = sum(len(f.audio) for f in audio) / 2 / RATE * 1000
    assert abs(audio_ms - 80 * len(audio)) < 80  # one message per 80 ms frame (resampled to 16 kHz)
    spoken = "".join(f.text for f in h.down.frames if isinstance(f, TTSTextFrame))
    assert "Paris" in spoken and "rains" in spoken
    assert not [f for f in h.up.frames if isinstance(f, ErrorFrame)]


def test_interruption_cancels_with_played_ms_and_no_stale_audio_follows(start_server):
    srv = start_server(max_frames=200)

    async def main():
        tts = MakimaTTSService(url=srv.ws)
        async with Harness(tts) as h:
            await h.send(LLMFullResponseStartFrame(), LLMTextFrame(LONG))  # the reply is still streaming
            first = await h.down.wait_for(lambda f: isinstance(f, TTSAudioRawFrame))
            await h.send(InterruptionFrame())
            mark = h.down.frames.index(await h.down.wait_for(lambda f: isinstance(f, InterruptionFrame)))
            await asyncio.wait_for(h.interrupted.wait(), TIMEOUT)  # the server's `cancelled`, reported
            await h.send(LLMFullResponseEndFrame())
            after = await h.spoken("Yes?")  # the session goes on
            return h, first.context_id, mark, after

    h, interrupted, mark, after = run(main())
    print("\n--- Pipecat transcript (interruption) ---\n" + transcript(h.log))
    stale = [f for f in h.down.frames[mark:] if isinstance(f, TTSAudioRawFrame) and f.context_id == interrupted]
    assert stale == []
    [cut] = h.interruptions
    assert cut.utterance_id.startswith(interrupted) and cut.reason == "cancel"
    handed_ms = sum(len(f.audio) for f in h.audio(interrupted)) / 2 / RATE * 1000
    assert 0 <= cut.played_ms <= handed_ms <= cut.audio_sent_ms + 1e-6  # played ≤ pushed ≤ what the server sent
    assert LONG.startswith(cut.heard_text) and len(cut.heard_text) < len(LONG)  # the server's heardText, passed on
    assert h.audio(after) and after != interrupted


def test_a_server_restart_is_survived(start_server):
    # no grace: the reply below is cut at the stop, whether or not its first sentence's audio had ended (on
    # the end token) by then; with a grace the server would close its open text and let it complete
    srv = start_server(max_frames=200, shutdown_grace_s=0)
    port = srv.port

    async def main():
        tts = MakimaTTSService(url=srv.ws, backoff=Backoff(attempts=200, initial_s=0.05, max_s=0.2))
        async with Harness(tts) as h:
            before = await h.spoken("Before the restart.")
            await h.send(LLMFullResponseStartFrame(), LLMTextFrame("This reply is cut off when the server stops. "),
                         LLMTextFrame("And it goes on"))
            cut = (await h.down.wait_for(lambda f: isinstance(f, TTSAudioRawFrame) and f.context_id != before))
            await asyncio.to_thread(srv.stop)
            error = await h.up.wait_for(lambda f: isinstance(f, ErrorFrame))
            await h.down.wait_for(lambda f: isinstance(f, TTSStoppedFrame) and f.context_id == cut.context_id)
            await asyncio.wait_for(until(lambda: tts.client.state is ClientState.DISCONNECTED), TIMEOUT)
            await asyncio.to_thread(start_server, port, max_frames=200)
            await h.send(LLMFullResponseEndFrame())  # the rest of the reply is spoken on the new session
            after = await h.spoken("After the restart.")
            return h, before, after, error, tts.client.reconnects, tts.is_usable

    h, before, after, error, reconnects, usable = run(main())
    print("\n--- Pipecat transcript (server restart) ---\n" + transcript(h.log))
    assert h.audio(before) and h.audio(after) and after != before
    assert error.category in (ErrorCategory.CONNECTIVITY, ErrorCategory.RATE_LIMIT)  # SERVER_BUSY at shutdown
    assert not error.category.is_permanent and usable
    assert reconnects == 1  # the same client, reconnected


def test_an_unknown_voice_is_a_permanent_error_frame(start_server):
    srv = start_server()

    async def main():
        tts = MakimaTTSService(url=srv.ws, voice="nobody")
        async with Harness(tts) as h:
            await h.send(TTSSpeakFrame("Hello."))
            error = await h.up.wait_for(lambda f: isinstance(f, ErrorFrame))
            await h.down.wait_for(lambda f: isinstance(f, TTSStoppedFrame))
            return h, error, tts.is_usable

    h, error, usable = run(main())
    assert "VOICE_NOT_FOUND" in error.error and "nobody" in error.error
    assert error.category is ErrorCategory.INVALID_REQUEST and not usable
    assert h.audio() == []


@pytest.mark.parametrize(("error", "category"), [
    (SpeakError(ErrorCode.CONNECTION_FAILED, "lost"), ErrorCategory.CONNECTIVITY),
    (SpeakError(ErrorCode.SERVER_BUSY, "busy"), ErrorCategory.RATE_LIMIT),
    (SpeakError(ErrorCode.INVALID_TEXT, "too long"), ErrorCategory.APPLICATION),  # the next text may be fine
    (SpeakError(ErrorCode.UNAUTHORIZED, "bad token"), ErrorCategory.AUTHENTICATION),
    (SpeakError(ErrorCode.HANDSHAKE_REFUSED, "Origin", status=403), ErrorCategory.AUTHORIZATION),
    (SpeakError(ErrorCode.SYNTHESIS_ERROR, "model failed"), ErrorCategory.SERVER),
])
def test_client_errors_have_pipecat_categories(error, category):
    assert error_category(error) is category
    assert category.is_permanent is (category in (ErrorCategory.AUTHENTICATION, ErrorCategory.AUTHORIZATION))
