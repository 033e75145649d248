"""SpeakClient against a real server on loopback (tiny checkpoint): whole and streamed text, cancel and
interrupt, errors with the server's codes, and reconnecting after a busy refusal or a server restart."""

from __future__ import annotations

import asyncio
import socket

import pytest
from server_helpers import TIMEOUT, run

from makima_tts.client import Backoff, ClientState, ErrorCode, Priority, SpeakClient, SpeakError
from makima_tts.server.protocol import Cancelled, Complete

LONG = " ".join(["The quick brown fox jumps over the lazy dog."] * 8)


async def first_chunk(utt) -> tuple[bytes, object]:
    it = utt.__aiter__()
    return await asyncio.wait_for(it.__anext__(), TIMEOUT), it


def test_speak_yields_pcm_then_complete_stats(server):
    async def main():
        async with SpeakClient(server.ws, sample_rate=16000) as tts:
            assert tts.ready.capabilities.protocol == "tts.v1" and tts.started.sampleRate == 16000
            speech = tts.speak("Hello, I am Makima.")
            chunks = [chunk async for chunk in speech]
            return chunks, speech

    chunks, speech = run(main())
    assert isinstance(speech.complete, Complete) and speech.complete.utteranceId == speech.id
    assert len(chunks) == speech.complete.frames > 0
    samples = sum(len(c) for c in chunks) // 2  # pcm16
    assert samples * 1000 / 16000 == pytest.approx(speech.complete.audioLengthMs)


def test_pcm32f_and_read_all(server):
    async def main():
        async with SpeakClient(server.ws, encoding="pcm32f") as tts:
            return await tts.speak("Float samples.").read_all()

    audio, complete = run(main())
    assert len(audio) // 4 * 1000 / 24000 == pytest.approx(complete.audioLengthMs)


def test_streamed_text_is_one_utterance_whose_audio_starts_before_its_end(start_server):
    srv = start_server(max_frames=12)

    async def main():
        async with SpeakClient(srv.ws) as tts:
            speech = tts.append("Sure, the weather in Paris is sunny. ")
            first, rest = await first_chunk(speech)  # audio before the text is ended
            assert tts.append("Tomorrow it rains. ") is speech
            flushed = await tts.flush()
            assert tts.end("Take an umbrella.") is speech
            more = [chunk async for chunk in rest]
            return speech, [first, *more], flushed

    speech, chunks, flushed = run(main())
    assert speech.complete is not None and speech.complete.frames == len(chunks)
    assert speech.complete.charactersProcessed == len("Sure, the weather in Paris is sunny. Tomorrow it rains. "
                                                      "Take an umbrella.")
    assert flushed is not None and flushed > 0


def test_cancel_keeps_received_audio_and_returns_the_terminal(start_server):
    srv = start_server(max_frames=200)

    async def main():
        async with SpeakClient(srv.ws) as tts:
            speech = tts.speak(LONG)
            await first_chunk(speech)
            terminals = await tts.cancel(speech.id, played_ms=40)
            after = await tts.speak("Still here.").read_all()  # the session goes on
            return speech, terminals, after

    speech, terminals, (audio, complete) = run(main())
    assert terminals == [speech.cancelled] and isinstance(speech.cancelled, Cancelled)
    assert speech.cancelled.reason == "cancel" and speech.cancelled.audioSentMs > 0
    assert audio and isinstance(complete, Complete)


def test_interrupt_drops_unread_audio_of_everything(start_server):
    srv = start_server(max_frames=200)

    async def main():
        async with SpeakClient(srv.ws) as tts:
            playing, queued = tts.speak(LONG), tts.speak(LONG)
            _, rest = await first_chunk(playing)
            terminals = await tts.interrupt(played_ms=80)
            leftover = [chunk async for chunk in rest]
            barge_in = tts.speak("Yes?", priority=Priority.INTERRUPT)
            return terminals, leftover, playing, queued, await barge_in.wait()

    terminals, leftover, playing, queued, barge_in = run(main())
    assert [t.utteranceId for t in terminals] == [playing.id, queued.id]
    assert all(isinstance(t, Cancelled) for t in terminals)
    assert leftover == []  # nothing buffered is handed out after interrupt()
    assert isinstance(barge_in, Complete)


def test_server_errors_keep_their_codes(server):
    async def main():
        async with SpeakClient(server.ws) as tts:
            with pytest.raises(SpeakError) as voice:
                async for _ in tts.speak("Hi.", voice="no-such-voice"):
                    pass
            with pytest.raises(SpeakError) as empty:
                await tts.speak("   ").wait()
            with pytest.raises(SpeakError) as unknown:
                await tts.cancel("never-sent")
            return voice.value, empty.value, unknown.value, tts.state

    voice, empty, unknown, state = run(main())
    assert voice.code is ErrorCode.VOICE_NOT_FOUND and "no-such-voice" in voice.message and voice.utterance_id
    assert empty.code is ErrorCode.INVALID_TEXT
    assert unknown.code is ErrorCode.INVALID_STATE
    assert state is ClientState.OPEN  # recoverable errors leave the session usable


def test_bad_start_settings_fail_connect(server):
    async def main():
        with pytest.raises(SpeakError) as rate:
            async with SpeakClient(server.ws, sample_rate=12345):
                pass
        with pytest.raises(SpeakError) as voice:
            async with SpeakClient(server.ws, voice="nobody"):
                pass
        return rate.value, voice.value

    rate, voice = run(main())
    assert rate.code is ErrorCode.UNSUPPORTED_FORMAT and "sampleRate" in rate.message
    assert voice.code is ErrorCode.VOICE_NOT_FOUND


def test_token_is_required_and_sent(start_server):
    srv = start_server(auth_tokens=["s3cret"])

    async def main():
        with pytest.raises(SpeakError) as refused:
            async with SpeakClient(srv.ws, token="wrong", backoff=Backoff(attempts=3)):
                pass
        async with SpeakClient(srv.ws, token="s3cret") as tts:
            return refused.value, await tts.speak("Authorised.").wait()

    refused, complete = run(main())
    assert refused.code is ErrorCode.UNAUTHORIZED and refused.close_code == 4001 and not refused.retryable
    assert isinstance(complete, Complete)


def test_busy_server_is_retried_with_backoff_until_a_session_frees(start_server):
    srv = start_server(max_sessions=1)

    async def main():
        retried = asyncio.Event()
        seen: list[SpeakError] = []

        def on_retry(attempt: int, error: SpeakError, delay: float) -> None:
            seen.append(error)
            retried.set()

        holder = SpeakClient(srv.ws)
        await holder.connect()
        waiting = SpeakClient(srv.ws, on_retry=on_retry, backoff=Backoff(attempts=50, initial_s=0.05, max_s=0.2))
        connecting = asyncio.create_task(waiting.connect())
        await asyncio.wait_for(retried.wait(), TIMEOUT)  # refused once: the only session is taken
        await holder.close()
        await asyncio.wait_for(connecting, TIMEOUT)
        complete = await waiting.speak("My turn.").wait()
        await waiting.close()
        return seen, complete

    seen, complete = run(main())
    assert seen[0].code is ErrorCode.SERVER_BUSY and seen[0].close_code == 1013
    assert isinstance(complete, Complete)


def test_busy_server_gives_up_after_the_attempts(start_server):
    srv = start_server(max_sessions=1)

    async def main():
        async with SpeakClient(srv.ws):
            attempts: list[int] = []
            with pytest.raises(SpeakError) as busy:
                await SpeakClient(srv.ws, backoff=Backoff(attempts=3, initial_s=0.01),
                                  on_retry=lambda n, e, d: attempts.append(n)).connect()
            return busy.value, attempts

    busy, attempts = run(main())
    assert busy.code is ErrorCode.SERVER_BUSY and attempts == [1, 2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_reconnects_after_a_server_restart(start_server):
    port = free_port()  # both servers bind it with SO_REUSEADDR (their closed connections may linger)
    srv = start_server(port)

    async def main():
        retried = asyncio.Event()
        tts = SpeakClient(srv.ws, backoff=Backoff(attempts=200, initial_s=0.05, max_s=0.2),
                          on_retry=lambda n, e, d: retried.set())
        await tts.connect()
        before = await tts.speak("Before the restart.").wait()
        await asyncio.to_thread(srv.stop)  # sessions end with stopped{server_shutdown}, close 1001
        while tts.state is not ClientState.DISCONNECTED:
            await asyncio.sleep(0.01)
        speech = tts.speak("After the restart.")  # queued: the writer reconnects first
        await asyncio.wait_for(retried.wait(), TIMEOUT)  # the port is closed: it is retrying
        await asyncio.to_thread(start_server, port)
        after = await asyncio.wait_for(speech.wait(), TIMEOUT)
        stopped = tts.stopped
        await tts.close()
        return before, after, tts.reconnects, stopped

    before, after, reconnects, stopped = run(main())
    assert isinstance(before, Complete) and isinstance(after, Complete)
    assert reconnects == 1 and stopped.reason == "server_shutdown"


def test_a_closed_client_refuses_work(server):
    async def main():
        tts = SpeakClient(server.ws)
        with pytest.raises(SpeakError) as idle:
            tts.speak("Not connected.")
        await tts.connect()
        await tts.close()
        with pytest.raises(SpeakError) as closed:
            tts.speak("Closed.")
        return idle.value, closed.value

    idle, closed = run(main())
    assert idle.code is ErrorCode.INVALID_STATE and "connect" in idle.message
    assert closed.code is ErrorCode.CLIENT_CLOSED


def test_bad_url_is_a_clear_value_error():
    with pytest.raises(ValueError, match="ws://HOST:PORT"):
        SpeakClient("ftp://example")
    with pytest.raises(ValueError, match="/api/v1/speak"):
        SpeakClient("ws://127.0.0.1:1/elsewhere")
