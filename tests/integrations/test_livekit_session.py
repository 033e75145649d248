"""MakimaTTS inside a real livekit-agents `AgentSession`, with no LiveKit room or server: the session is
started without `room=` and its audio goes to a custom `AudioOutput` that collects the frames. A real server
on loopback with the tiny checkpoint speaks `session.say()` and an LLM reply from `generate_reply()`; an
interrupted speech stops its audio and MakimaTTS reports what the listener heard of it."""

from __future__ import annotations

import asyncio
import time

from livekit import rtc
from livekit.agents import Agent, AgentSession, APIConnectOptions, llm
from livekit.agents.voice import io
from server_helpers import TIMEOUT, run

from makima_tts.integrations.livekit import MakimaTTS
from makima_tts.integrations.playback import Interruption

RATE = 16000  # not the server's default (24000): frames at 16 kHz come from the rate MakimaTTS asked for
LONG = " ".join(["The quick brown fox jumps over the lazy dog."] * 8)
REPLY = ["Sure, ", "the weather ", "in Paris ", "is sunny."]


class CollectedAudio(io.AudioOutput):
    """The session's audio sink (where a room's audio track would be): keeps the frames, each segment played
    as soon as it is flushed (the README's sink). It takes any sample rate, so the session does not resample."""

    def __init__(self) -> None:
        super().__init__(label="collected", capabilities=io.AudioOutputCapabilities(pause=False))
        self.frames: list[rtc.AudioFrame] = []
        self.finished: list[io.PlaybackFinishedEvent] = []
        self.on("playback_finished", self.finished.append)
        self.segment_s = 0.0  # audio captured in the open segment
        self.open = False  # a segment was captured and its playback is not reported yet

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        if not self.open:
            self.open, self.segment_s = True, 0.0
            self.on_playback_started(created_at=time.time())
        self.frames.append(frame)
        self.segment_s += frame.duration

    def flush(self) -> None:
        super().flush()
        asyncio.get_running_loop().call_soon(self.finish, False)  # unless a clear_buffer() comes first

    def clear_buffer(self) -> None:
        self.finish(interrupted=True)

    def finish(self, interrupted: bool) -> None:
        if self.open:
            self.open = False
            self.on_playback_finished(playback_position=self.playhead(), interrupted=interrupted)

    def playhead(self) -> float:
        """Seconds of the open segment played."""
        return self.segment_s


class RealtimeAudio(CollectedAudio):
    """A sink that plays in real time: it takes each frame when the playhead is within `AHEAD_S` of it (a
    room's audio output queues 200 ms in its `rtc.AudioSource`), so an interruption cuts a partly played segment."""

    AHEAD_S = 0.2

    def __init__(self) -> None:
        super().__init__()
        self._started_at = 0.0  # time.monotonic() of the open segment's first frame
        self._played: list[tuple[float, asyncio.Event]] = []  # (seconds, set once that much has played)

    def played(self, seconds: float) -> asyncio.Event:
        """Set once the open (or next) segment has played `seconds` of audio."""
        self._played.append((seconds, event := asyncio.Event()))
        return event

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        if not self.open:
            self._started_at = time.monotonic()
        ahead = self.segment_s - (time.monotonic() - self._started_at) if self.open else 0.0
        await asyncio.sleep(max(0.0, ahead - self.AHEAD_S))  # a speaker's pace
        await super().capture_frame(frame)
        for seconds, event in self._played:
            if self.playhead() >= seconds:
                event.set()

    def playhead(self) -> float:
        return min(self.segment_s, time.monotonic() - self._started_at)


class FixedReplyLLM(llm.LLM):
    """A stand-in for the user's LLM: every reply streams the same tokens."""

    def chat(self, *, chat_ctx: llm.ChatContext, tools: list[llm.Tool] | None = None,
             conn_options: APIConnectOptions = APIConnectOptions(), **_) -> llm.LLMStream:
        return FixedReplyStream(self, chat_ctx=chat_ctx, tools=tools or [], conn_options=conn_options)


class FixedReplyStream(llm.LLMStream):
    async def _run(self) -> None:
        for token in REPLY:
            self._event_ch.send_nowait(llm.ChatChunk(id="reply", delta=llm.ChoiceDelta(role="assistant", content=token)))


async def started_session(tts: MakimaTTS, audio: CollectedAudio) -> AgentSession:
    """An AgentSession with our TTS and no room: no VAD or STT (nothing listens, so no turn detection and no
    false-interruption resume), audio into `audio`."""
    session = AgentSession(tts=tts, llm=FixedReplyLLM(), vad=None, turn_handling={
        "turn_detection": None, "interruption": {"resume_false_interruption": False}})
    session.output.audio = audio
    await session.start(Agent(instructions="You are a test."))
    return session


def recorded(tts: MakimaTTS, event: str) -> list:
    seen: list = []
    tts.on(event, seen.append)
    return seen


def seconds(frames: list[rtc.AudioFrame]) -> float:
    return sum(f.duration for f in frames)


async def bounded(aw) -> object:
    return await asyncio.wait_for(aw, TIMEOUT)


def test_say_and_an_llm_reply_play_through_the_session_at_the_negotiated_rate(start_server):
    srv = start_server(max_frames=12)

    async def main() -> tuple[list[rtc.AudioFrame], list[rtc.AudioFrame], CollectedAudio, list, list[str]]:
        tts = MakimaTTS(url=srv.ws, sample_rate=RATE)
        metrics = recorded(tts, "metrics_collected")
        audio = CollectedAudio()
        session = await started_session(tts, audio)
        said = session.say("Hello, I am Makima.")
        await bounded(said.wait_for_playout())
        said_frames = list(audio.frames)
        replied = session.generate_reply(user_input="What is the weather in Paris?")
        await bounded(replied.wait_for_playout())
        reply_frames = audio.frames[len(said_frames):]
        history = [item.text_content for item in session.history.items if item.type == "message"]
        await session.aclose()
        await tts.aclose()
        return said_frames, reply_frames, audio, metrics, history

    said, reply, audio, metrics, history = run(main())
    for frames in (said, reply):
        assert frames and seconds(frames) > 0
        assert all(f.sample_rate == RATE and f.num_channels == 1 for f in frames)
    assert [ev.interrupted for ev in audio.finished] == [False, False]  # both played out whole
    assert history == ["Hello, I am Makima.", "What is the weather in Paris?", "".join(REPLY)]
    # the session's start prewarmed the pool: both speeches reuse that one connection
    assert [m.connection_reused for m in metrics] == [True, True]


def test_interrupting_a_speech_stops_its_audio_and_reports_the_heard_text(start_server):
    srv = start_server(max_frames=1000)  # 80 s of audio: still being made when 0.5 s of it has played

    async def main():
        tts = MakimaTTS(url=srv.ws, sample_rate=RATE)
        interrupted: list[Interruption] = recorded(tts, "interrupted")
        cut = asyncio.Event()
        tts.on("interrupted", lambda _: cut.set())
        audio = RealtimeAudio()
        session = await started_session(tts, audio)
        handle = session.say(LONG)
        await bounded(audio.played(0.5).wait())
        before = len(audio.frames)
        await bounded(session.interrupt())
        await bounded(cut.wait())  # MakimaTTS cancelled the utterance on the server
        await bounded(handle.wait_for_playout())  # the session is done with the speech
        cuts, heard, finished = list(interrupted), list(audio.frames), list(audio.finished)
        kept = [(item.text_content, item.interrupted) for item in session.history.items if item.type == "message"]
        session.say("Still here.")  # the same pooled connection goes on
        await bounded(audio.played(0.1).wait())
        after = audio.frames[len(heard):]
        await session.aclose()
        await tts.aclose()
        return handle, cuts, before, heard, after, finished, kept

    handle, interrupted, before, heard, after, finished, kept = run(main())
    assert handle.interrupted and handle.done()
    [cut] = interrupted
    assert cut.reason == "cancel"  # the utterance was still in flight on the server
    assert 500 <= cut.played_ms <= cut.audio_sent_ms  # the plugin's clock: at least what the sink had played
    assert LONG.startswith(cut.heard_text) and 0 < len(cut.heard_text) < len(LONG)
    assert len(heard) - before <= 1  # the audio stopped: at most the frame being taken when the cut came
    assert seconds(heard) * 1000 <= cut.audio_sent_ms + 1  # no more than the server had sent
    [played] = finished
    assert played.interrupted and 0.5 <= played.playback_position <= seconds(heard)
    assert after and all(f.sample_rate == RATE for f in after)
    # without a room's transcript synchronizer LiveKit keeps all of the text: heard_text is what to keep instead
    assert kept == [(LONG, True)]
