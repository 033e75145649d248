"""One-shot HTTP speech (`/api/v1/speak`; OpenAI's route: test_routes_openai), health, readiness, metrics and
pages."""

from __future__ import annotations

import struct
import time

import httpx
import numpy as np
import pytest

SENTENCE = "Hello there, this is a test."


def parse_streamed_wav(body: bytes) -> tuple[int, int, int, bytes]:
    """(format tag, sample rate, bits, data) of a streamed WAV (sizes are 0xFFFFFFFF: unknown)."""
    assert body[:4] == b"RIFF" and body[8:16] == b"WAVEfmt "
    tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[20:36])
    assert channels == 1 and body[36:40] == b"data"
    return tag, rate, bits, body[44:]


def test_speak_wav(server):
    r = httpx.post(f"{server.http}/api/v1/speak", json={"text": SENTENCE}, timeout=60)
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
    tag, rate, bits, data = parse_streamed_wav(r.content)
    assert (tag, rate, bits) == (1, 24000, 16)
    samples = len(data) // 2
    assert samples > 0 and samples % 1920 == 0  # whole 80 ms frames


@pytest.mark.parametrize("rate,encoding,width", [(16000, "pcm16", 2), (48000, "pcm32f", 4), (22050, "pcm16", 2)])
def test_speak_raw_pcm(server, rate, encoding, width):
    body = {"text": SENTENCE, "format": "pcm", "sampleRate": rate, "encoding": encoding}
    r = httpx.post(f"{server.http}/api/v1/speak", json=body, timeout=60)
    assert r.status_code == 200 and r.headers["content-type"] == "audio/pcm"
    assert r.headers["x-sample-rate"] == str(rate) and r.headers["x-encoding"] == encoding
    samples = len(r.content) // width
    per_frame = rate * 80 // 1000
    assert abs(samples - round(samples / per_frame) * per_frame) <= 1
    pcm = np.frombuffer(r.content, dtype="<i2" if width == 2 else "<f4")
    assert np.isfinite(pcm.astype(np.float64)).all()


def test_speak_errors(server):
    url = f"{server.http}/api/v1/speak"
    cases = [
        ({"text": ""}, 422, "INVALID_REQUEST"),
        ({"text": "   "}, 422, "INVALID_TEXT"),
        ({"text": "x" * 5001}, 422, "INVALID_TEXT"),
        ({"text": SENTENCE, "voice": "ghost"}, 404, "VOICE_NOT_FOUND"),
        ({"text": SENTENCE, "voice": "makima"}, 404, "VOICE_NOT_FOUND"),
        ({"text": SENTENCE, "voice": "../x"}, 422, "INVALID_VOICE_ID"),
        ({"text": SENTENCE, "language": "elvish"}, 422, "INVALID_REQUEST"),
        ({"text": SENTENCE, "sampleRate": 12345}, 422, "INVALID_REQUEST"),
    ]
    for body, status, code in cases:
        r = httpx.post(url, json=body, timeout=60)
        assert r.status_code == status, (body, r.text)
        assert r.json()["error"]["code"] == code and r.json()["error"]["message"]


def test_health_ready_metrics(server):
    assert httpx.get(f"{server.http}/health").json() == {"status": "ok"}
    ready = httpx.get(f"{server.http}/ready")
    body = ready.json()
    assert ready.status_code == 200 and body["ready"] is True
    assert body["modelState"] == "loaded" and body["progress"] == 1.0 and body["message"]
    assert httpx.post(f"{server.http}/api/v1/speak", json={"text": SENTENCE}, timeout=60).status_code == 200
    ghost = httpx.post(f"{server.http}/api/v1/speak", json={"text": SENTENCE, "voice": "ghost"})
    assert ghost.status_code == 404 and ghost.json()["error"]["code"] == "VOICE_NOT_FOUND"
    metrics = httpx.get(f"{server.http}/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    for name in (
        "tts_sessions_active",
        "tts_sessions_total",
        'tts_utterances_total{outcome="complete",transport="http"}',
        "tts_time_to_first_audio_seconds_bucket",
        "tts_real_time_factor_bucket",
        "tts_model_loaded 1.0",
    ):
        assert name in text, name


def test_openapi_documents_errors(server):
    spec = httpx.get(f"{server.http}/openapi.json").json()
    paths = spec["paths"]
    assert set(paths["/api/v1/voices"]["post"]["responses"]) >= {"201", "409", "413", "415", "422", "503"}
    assert set(paths["/api/v1/voices/{voice_id}"]["delete"]["responses"]) >= {"204", "403", "404", "422"}
    assert set(paths["/api/v1/speak"]["post"]["responses"]) >= {"200", "404", "422", "503"}
    speech = paths["/v1/audio/speech"]["post"]["responses"]
    assert set(speech) >= {"200", "400", "401", "429", "503"} and "422" not in speech  # OpenAI: 400s
    assert set(speech["200"]["content"]) == {"audio/mpeg", "audio/ogg", "audio/aac", "audio/flac", "audio/wav",
                                             "audio/pcm", "text/event-stream"}


def test_pages(server):
    for path, title, script in (("/", "Speak", "speak-page.js"), ("/listen", "Listen", "listen-page.js")):
        r = httpx.get(f"{server.http}{path}")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert f"<title>makima-tts · {title}</title>" in r.text
        assert f'<script type="module" src="/static/{script}"></script>' in r.text
    for module in ("wire.js", "player.js", "speak-client.js", "page-common.js", "player-worklet.js"):
        r = httpx.get(f"{server.http}/static/{module}")
        assert r.status_code == 200 and "javascript" in r.headers["content-type"], module
    r = httpx.get(f"{server.http}/static/no-such-file.js")
    assert r.status_code == 404


def test_model_status_answers_200_in_every_state(start_server):
    """`/api/v1/status` (what the pages poll) answers 200 with the load state, where `/ready` answers 503
    while loading; it needs a token like the rest of the API."""
    srv = start_server(auth_tokens="t1", preload=False)  # nothing loads it: no utterance asks for it
    r = httpx.get(f"{srv.http}/api/v1/status")
    assert r.status_code == 401
    auth = {"Authorization": "Bearer t1"}
    r = httpx.get(f"{srv.http}/api/v1/status", headers=auth)
    assert r.status_code == 200
    assert r.json() == {"modelState": "not_loaded", "progress": 0.0, "message": r.json()["message"], "error": None}
    srv.services.models.state = "loading"  # as while a load runs (the tiny model loads too fast to catch)
    assert httpx.get(f"{srv.http}/ready").status_code == 503
    r = httpx.get(f"{srv.http}/api/v1/status", headers=auth)
    assert r.status_code == 200 and r.json()["modelState"] == "loading"


def test_http_client_hanging_up_cancels_the_engine_job(start_server):
    srv = start_server(max_frames=0)  # the engine's own budget: hundreds of frames
    srv.wait_loaded()
    engine = srv.services.models.engine
    text = " ".join(["The quick brown fox jumps over the lazy dog."] * 6)
    with httpx.stream("POST", f"{srv.http}/api/v1/speak", json={"text": text, "format": "pcm"}, timeout=60) as r:
        assert r.status_code == 200
        next(r.iter_bytes())
        assert engine.busy_streams == 1
    deadline = time.monotonic() + 60
    while engine.busy_streams:
        assert time.monotonic() < deadline, "the engine job of a vanished HTTP client was not cancelled"
        time.sleep(0.02)
