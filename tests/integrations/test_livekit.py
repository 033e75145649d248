"""MakimaTTS through livekit-agents' own TTS API (no room needed) against a real server on loopback with
the tiny checkpoint: synthesize() and stream() produce frames at the negotiated rate over one pooled
connection; closing a stream cancels the utterance on the server; a server stopped mid-stream and a
refused request are APIErrors flagged retryable or not."""

from __future__ import annotations

import asyncio

import pytest
from livekit.agents import APIConnectionError, APIConnectOptions, APIError, APIStatusError
from livekit.agents.metrics import TTSMetrics
from livekit.agents.tts import SynthesizedAudio, TTSError
from server_helpers import TIMEOUT, run

from makima_tts.client import ErrorCode, SpeakError
from makima_tts.integrations.livekit import MakimaTTS, api_error
from makima_tts.integrations.playback import Interruption

RATE = 16000
LONG = " ".join(["The quick brown fox jumps over the lazy dog."] * 8)


def recorded(tts: MakimaTTS, event: str) -> list:
    seen: list = []
    tts.on(event, seen.append)
    return seen


def test_synthesize_and_stream_share_one_connection_and_emit_frames_at_the_negotiated_rate(start_server):
    srv = start_server(max_frames=12)

    async def main():
        tts = MakimaTTS(url=srv.ws, sample_rate=RATE)
        metrics: list[TTSMetrics] = recorded(tts, "metrics_collected")
        whole = [ev async for ev in tts.synthesize("Hello, I am Makima.")]
        stream = tts.stream()
        for token in ["Sure, ", "the weather ", "in Paris ", "is sunny."]:
            stream.push_text(token)
        stream.flush()
        stream.end_input()
        streamed = [ev async for ev in stream]
        await stream.aclose()
        await asyncio.sleep(0)  # the metrics task emits after the last frame
        await tts.aclose()
        return whole, streamed, metrics

    whole, streamed, metrics = run(main())
    for events in (whole, streamed):
        assert events and all(isinstance(ev, SynthesizedAudio) for ev in events)
        assert all(ev.frame.sample_rate == RATE and ev.frame.num_channels == 1 for ev in events)
        assert [ev.is_final for ev in events].count(True) == 1 and events[-1].is_final
        assert sum(ev.frame.duration for ev in events) > 0
    assert len({ev.segment_id for ev in streamed}) == 1 and streamed[0].segment_id  # one utterance, one segment
    assert [m.connection_reused for m in metrics] == [False, True]  # the stream reused synthesize's session


def test_closing_a_stream_cancels_its_utterance_on_the_server(start_server):
    srv = start_server(max_frames=200)

    async def main():
        tts = MakimaTTS(url=srv.ws, sample_rate=RATE)
        interrupted: list[Interruption] = recorded(tts, "interrupted")
        stream = tts.stream()
        stream.push_text(LONG)  # the text stays open: only closing the stream ends it
        first = await asyncio.wait_for(stream.__anext__(), TIMEOUT)
        await stream.aclose()
        after = [ev async for ev in stream]
        nxt = [ev async for ev in tts.synthesize("Still here.")]  # the same connection goes on
        await tts.aclose()
        return first, interrupted, after, nxt

    first, interrupted, after, nxt = run(main())
    [cut] = interrupted
    assert cut.utterance_id == first.segment_id and cut.reason == "cancel"
    assert 0 <= cut.played_ms <= cut.audio_sent_ms
    assert LONG.startswith(cut.heard_text) and len(cut.heard_text) < len(LONG)  # the server's heardText, passed on
    assert after == []  # no audio once the stream is closed
    assert nxt and nxt[-1].is_final


def test_a_server_stopped_mid_stream_is_a_retryable_api_error(start_server):
    srv = start_server(max_frames=200, shutdown_grace_s=0)  # no grace: the stream is cut at the stop

    async def main():
        tts = MakimaTTS(url=srv.ws, sample_rate=RATE)
        errors: list[TTSError] = recorded(tts, "error")
        stream = tts.stream()
        stream.push_text(LONG)
        await asyncio.wait_for(stream.__anext__(), TIMEOUT)
        await asyncio.to_thread(srv.stop)
        with pytest.raises(APIError) as raised:
            async for _ in stream:
                pass
        await stream.aclose()
        await tts.aclose()
        return raised.value, errors

    error, errors = run(main())
    assert error.retryable  # the server went away: trying again later can help
    assert isinstance(error, APIConnectionError | APIStatusError) and "server_shutdown" in str(error)
    # audio had been pushed, so LiveKit does not retry: one error, reported as not recovered
    assert [e.recoverable for e in errors] == [False] and errors[0].error is error


def test_a_refused_request_is_an_api_status_error_that_is_not_retried(start_server):
    srv = start_server()

    async def main():
        tts = MakimaTTS(url=srv.ws, voice="nobody")
        errors: list[TTSError] = recorded(tts, "error")
        with pytest.raises(APIStatusError) as raised:
            await tts.synthesize("Hello.", conn_options=APIConnectOptions(max_retry=3, retry_interval=0)).collect()
        await tts.aclose()
        return raised.value, errors

    error, errors = run(main())
    assert error.status_code == 404 and not error.retryable and "nobody" in error.message
    assert [e.recoverable for e in errors] == [False]  # not retried


@pytest.mark.parametrize(("error", "kind", "status", "retryable"), [
    (SpeakError(ErrorCode.CONNECTION_FAILED, "lost", close_code=1006), APIConnectionError, None, True),
    (SpeakError(ErrorCode.SERVER_BUSY, "busy", close_code=1013), APIStatusError, 503, True),
    (SpeakError(ErrorCode.RATE_LIMITED, "slow down", retry_after_ms=500), APIStatusError, 429, True),
    (SpeakError(ErrorCode.VOICE_NOT_FOUND, "no voice"), APIStatusError, 404, False),
    (SpeakError(ErrorCode.UNAUTHORIZED, "bad token", close_code=4001), APIStatusError, 401, False),
    (SpeakError(ErrorCode.HANDSHAKE_REFUSED, "Origin", status=403), APIStatusError, 403, False),
    (SpeakError(ErrorCode.SYNTHESIS_ERROR, "model failed"), APIStatusError, 500, False),
])
def test_client_errors_become_api_errors_flagged_as_the_client_judges_them(error, kind, status, retryable):
    api = api_error(error)
    assert type(api) is kind and api.retryable is retryable and error.code_name in str(api)
    assert getattr(api, "status_code", None) == status
