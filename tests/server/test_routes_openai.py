"""OpenAI's speech API, driven by the official `openai` SDK against a real server on loopback (tiny
checkpoints): every response_format read back with the duration the server reports, progressive
streaming, SSE events, voices and models lists, the voice mapping, instructions, and every error in
OpenAI's shape."""

from __future__ import annotations

import base64
import io
import json
import re
import time

import av
import httpx
import numpy as np
import openai
import pytest

from makima_tts.encoders import RESPONSE_FORMATS
from makima_tts.server.openai_voices import OPENAI_VOICE_NAMES

SENTENCE = "Hello there, this is a test."
LONG = " ".join(["The quick brown fox jumps over the lazy dog."] * 6)
SR, FRAME = 24000, 1920
EXTRA = {"mp3": 2 * 576 + 1105, "aac": 3 * 1024}  # codec priming a streamed file cannot declare
CONTAINER = {"mp3": "mp3", "opus": "ogg", "aac": "aac", "flac": "flac", "wav": "wav"}


def sdk(srv, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{srv.http}/v1", api_key=key, max_retries=0, timeout=60)


def audio_seconds(srv) -> float:
    """The server's own count of the audio it generated (GET /metrics)."""
    text = httpx.get(f"{srv.http}/metrics").text
    return float(re.search(r"^tts_audio_seconds_total ([0-9.e+-]+)$", text, re.M).group(1))


def probe(data: bytes, fmt: str) -> dict:
    if fmt == "pcm":
        return {"container": "pcm", "codec": "pcm_s16le", "rate": SR, "channels": 1, "samples": len(data) // 2}
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        frames = list(container.decode(stream))
        return {"container": container.format.name.split(",")[0], "codec": stream.codec_context.name,
                "rate": stream.codec_context.sample_rate, "channels": stream.codec_context.channels,
                "samples": sum(f.samples for f in frames) * SR // frames[0].sample_rate}


@pytest.mark.parametrize("fmt", RESPONSE_FORMATS)
def test_every_format_reads_back_with_the_duration_generated(server, fmt):
    before = audio_seconds(server)
    response = sdk(server).audio.speech.create(model="tts-1", voice="alloy", input=SENTENCE, response_format=fmt)
    generated = round((audio_seconds(server) - before) * SR)
    assert generated > 0 and generated % FRAME == 0
    got = probe(response.content, fmt)
    assert got["channels"] == 1 and got["container"] == CONTAINER.get(fmt, "pcm")
    assert generated <= got["samples"] <= generated + EXTRA.get(fmt, 0), (got, generated)
    assert response.response.headers["content-type"] == {
        "mp3": "audio/mpeg", "opus": "audio/ogg", "aac": "audio/aac", "flac": "audio/flac", "wav": "audio/wav",
        "pcm": "audio/pcm"}[fmt]


def test_mp3_is_the_default(server):
    r = httpx.post(f"{server.http}/v1/audio/speech", json={"input": SENTENCE}, timeout=60)
    assert r.status_code == 200 and r.headers["content-type"] == "audio/mpeg"
    assert probe(r.content, "mp3")["codec"].startswith("mp3")


@pytest.mark.parametrize("fmt", RESPONSE_FORMATS)
def test_first_bytes_arrive_while_the_synthesis_runs(start_server, fmt):
    srv = start_server(max_frames=0)  # the engine's own budget: hundreds of frames for this text
    srv.wait_loaded()
    engine = srv.services.models.engine
    with sdk(srv).audio.speech.with_streaming_response.create(
            model="tts-1", voice="default", input=LONG, response_format=fmt) as response:
        chunks = response.iter_bytes()
        first = next(chunks)
        assert first and engine.busy_streams == 1  # the engine is still generating this utterance
    deadline = time.monotonic() + 60
    while engine.busy_streams:  # leaving early cancels the engine job
        assert time.monotonic() < deadline, "the engine job of a vanished client was not cancelled"
        time.sleep(0.02)
    again = sdk(srv).audio.speech.create(model="tts-1", voice="default", input=SENTENCE, response_format=fmt)
    assert again.content


def test_streamed_file_is_complete_when_read_progressively(server):
    with sdk(server).audio.speech.with_streaming_response.create(
            model="tts-1", voice="default", input=SENTENCE, response_format="opus") as response:
        parts = list(response.iter_bytes(chunk_size=256))
    data = b"".join(parts)
    assert len(parts) > 1 and probe(data, "opus")["samples"] % FRAME == 0


def sse_events(response) -> list[dict]:
    events = []
    for line in response.iter_lines():
        if line.startswith("data: "):
            events.append(json.loads(line[len("data: "):]))
    return events


@pytest.mark.parametrize("fmt", ["wav", "mp3"])
def test_sse_carries_the_file_and_usage(server, fmt):
    with sdk(server).audio.speech.with_streaming_response.create(
            model="gpt-4o-mini-tts", voice="default", input=SENTENCE, response_format=fmt,
            stream_format="sse") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
    deltas, done = events[:-1], events[-1]
    assert deltas and all(e["type"] == "speech.audio.delta" for e in deltas)
    assert done["type"] == "speech.audio.done"
    usage = done["usage"]
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    data = b"".join(base64.b64decode(e["audio"]) for e in deltas)
    frames = usage["output_tokens"]  # codec frames, 1920 samples each
    assert frames * FRAME <= probe(data, fmt)["samples"] <= frames * FRAME + EXTRA.get(fmt, 0)


@pytest.mark.parametrize("fmt,speed", [("pcm", 2.0), ("wav", 0.5), ("opus", 1.25)])
def test_speed_stretches_the_audio(server, fmt, speed):
    before = audio_seconds(server)
    response = sdk(server).audio.speech.create(model="tts-1", voice="alloy", input=SENTENCE, response_format=fmt,
                                               speed=speed)
    generated = (audio_seconds(server) - before) * SR
    got = probe(response.content, fmt)["samples"]
    assert abs(got - generated / speed) <= 0.02 * generated / speed + 0.05 * SR, (got, generated)


def test_sse_ends_with_an_error_event_when_the_synthesis_fails(start_server):
    """The engine's failure after the stream began (its Finished carries an error) becomes OpenAI's error
    event instead of speech.audio.done."""
    from makima_tts.engine.types import Finished

    srv = start_server()
    srv.wait_loaded()
    engine = srv.services.models.engine
    submit = engine.submit

    def failing(request, sink):  # the real job runs; its end is reported as a failure
        return submit(request, lambda e: sink(Finished(e.frames, error="decoder failed") if isinstance(e, Finished)
                                              else e))

    engine.submit = failing
    with sdk(srv).audio.speech.with_streaming_response.create(
            model="tts-1", voice="default", input=SENTENCE, response_format="pcm", stream_format="sse") as response:
        events = sse_events(response)
    assert events[0]["type"] == "speech.audio.delta" and "speech.audio.done" not in {e["type"] for e in events}
    assert events[-1] == {"type": "error", "error": {"message": "decoder failed", "type": "server_error",
                                                     "param": None, "code": "SYNTHESIS_ERROR"}}


def openai_error(exc: openai.APIStatusError) -> dict:
    body = exc.response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert "Traceback" not in exc.response.text and "detail" not in body
    return body["error"]


@pytest.mark.parametrize("overrides,param,words", [
    (dict(voice="ghost"), "voice", "default"),
    (dict(response_format="ogg"), "response_format", "'mp3', 'opus'"),
    (dict(instructions="Speak like a pirate."), "instructions", "VoiceDesign"),
    (dict(speed=9.0), "speed", "4"),
    (dict(input=""), "input", "at least 1"),
    (dict(input="   "), "input", "empty"),
    (dict(input="x" * 5001), "input", "5000"),
])
def test_bad_requests_are_400s_in_openai_shape(server, overrides, param, words):
    ask = dict(model="tts-1", voice="default", input=SENTENCE, response_format="mp3")
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(server).audio.speech.create(**{**ask, **overrides})
    error = openai_error(caught.value)
    assert error["param"] == param and error["type"] == "invalid_request_error" and words in error["message"]


def test_unknown_voice_names_the_voices_that_exist(server):
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(server).audio.speech.create(model="tts-1", voice="ghost", input=SENTENCE)
    message = openai_error(caught.value)["message"]
    assert "ghost" in message and "default" in message and all(name in message for name in OPENAI_VOICE_NAMES)


def test_a_body_that_is_not_json_is_a_400(server):
    r = httpx.post(f"{server.http}/v1/audio/speech", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    missing = httpx.post(f"{server.http}/v1/audio/speech", json={"voice": "alloy"})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "input"


def test_the_token_is_the_api_key(start_server):
    srv = start_server(auth_tokens="sk-right")
    with pytest.raises(openai.AuthenticationError) as caught:
        sdk(srv, "sk-wrong").audio.speech.create(model="tts-1", voice="alloy", input=SENTENCE)
    assert openai_error(caught.value)["code"] == "invalid_api_key" and "sk-wrong" not in caught.value.response.text
    srv.wait_loaded()
    assert sdk(srv, "sk-right").audio.speech.create(model="tts-1", voice="alloy", input=SENTENCE).content
    with pytest.raises(openai.AuthenticationError):
        sdk(srv, "sk-wrong").models.list()


def test_models_list_and_retrieve(server):
    client = sdk(server)
    ids = [m.id for m in client.models.list()]
    assert ids[0] == server.settings.model_id.rsplit("/", 1)[-1] and {"tts-1", "tts-1-hd", "gpt-4o-mini-tts"} <= set(ids)
    assert client.models.retrieve("tts-1").object == "model"
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("no-such-model")
    assert openai_error(caught.value)["param"] == "model"


def test_voices_list_on_a_base_model(server):
    body = httpx.get(f"{server.http}/v1/audio/voices").json()
    by_id = {v["id"]: v for v in body["voices"]}
    assert by_id["default"]["alias_of"] is None and "makima" not in by_id  # not provisioned: not speakable
    assert all(by_id[name]["alias_of"] == "default" for name in OPENAI_VOICE_NAMES)
    assert body["default"] == "default"


@pytest.fixture(scope="module")
def custom_voice_dir(tmp_path_factory):
    from makima_tts.tiny import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "custom", seed=0, kind="custom_voice")


def recorded_requests(srv) -> list:
    """The engine's requests, recorded on their way in (the real engine still runs them)."""
    engine, seen = srv.services.models.engine, []
    submit = engine.submit

    def recording(request, sink):
        seen.append(request)
        return submit(request, sink)

    engine.submit = recording
    return seen


def test_custom_voice_mapping_instructions_and_the_map_setting(start_server, custom_voice_dir):
    srv = start_server(model_id=str(custom_voice_dir), openai_voice_map="echo=vivian")
    srv.wait_loaded()
    voices = {v["id"]: v["alias_of"] for v in httpx.get(f"{srv.http}/v1/audio/voices").json()["voices"]}
    assert {"serena", "vivian", "uncle_fu", "dylan"} <= set(voices)
    assert voices["nova"] == "serena" and voices["onyx"] == "uncle_fu"  # the built-in table
    assert voices["alloy"] == "default"  # its speaker (ryan) is not in this checkpoint: the default voice
    assert voices["echo"] == "vivian"  # TTS_OPENAI_VOICE_MAP
    seen = recorded_requests(srv)
    client = sdk(srv)
    client.audio.speech.create(model="tts-1", voice="nova", input=SENTENCE, instructions="Whisper, slowly.")
    client.audio.speech.create(model="tts-1", voice={"id": "dylan"}, input=SENTENCE, response_format="pcm")
    client.audio.speech.create(model="tts-1", voice="echo", input=SENTENCE, response_format="pcm")
    assert [(r.speaker, r.instruct) for r in seen] == [
        ("serena", "Whisper, slowly."), ("dylan", None), ("vivian", None)]
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.speech.create(model="tts-1", voice="default-voice-x", input=SENTENCE)
    assert "serena" in openai_error(caught.value)["message"]


def test_voice_design_takes_instructions_as_the_voice(start_server, tmp_path):
    from makima_tts.tiny import build_tiny_checkpoint

    srv = start_server(model_id=str(build_tiny_checkpoint(tmp_path / "design", seed=0, kind="voice_design")))
    srv.wait_loaded()
    seen = recorded_requests(srv)
    sdk(srv).audio.speech.create(model="gpt-4o-mini-tts", voice="alloy", input=SENTENCE, response_format="wav",
                                 instructions="A deep, slow voice.")
    sdk(srv).audio.speech.create(model="gpt-4o-mini-tts", voice="alloy", input=SENTENCE, response_format="wav")
    assert [r.instruct for r in seen] == ["A deep, slow voice.", srv.settings.default_instruct]
    assert np.all([r.speaker is None and r.voice is None for r in seen])
