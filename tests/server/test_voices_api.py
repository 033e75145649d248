"""`/api/v1/voices` on a real server: listing, upload (clone) and delete, malformed uploads, hostile ids,
persistence across a restart, and deletes that leave nothing of the voice (the store and its prompt cache
on their own: tests/voices)."""

from __future__ import annotations

import io
import os

import httpx
import numpy as np
import pytest
import soundfile as sf
from server_helpers import Client, run


def clip(seconds: float, sr: int = 16000, channels: int = 1, fmt: str = "WAV") -> bytes:
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(0)
    voice = 0.3 * np.sin(2 * np.pi * 180 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)) + 0.02 * rng.standard_normal(t.size)
    data = np.repeat(voice[:, None], channels, axis=1).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, data, sr, format=fmt, subtype="PCM_16")
    return buf.getvalue()


def upload(srv, audio: bytes, filename: str = "clip.wav", **fields) -> httpx.Response:
    return httpx.post(f"{srv.http}/api/v1/voices", files={"audio": (filename, audio)}, data=fields, timeout=60)


def tree(root) -> set[str]:
    return {os.path.join(d, f) for d, _, files in os.walk(root) for f in files}



async def speak_once(server, voice: str, text: str) -> dict:
    """One utterance in `voice` over the WebSocket (no audio sent back); returns its terminal."""
    c = await Client.open(f"{server.ws}?voice={voice}&audioTransport=none")
    await c.recv_json("ready")
    await c.send(type="speak", utteranceId="once", text=text)
    done, _ = await c.until_terminal("once")
    await c.close()
    return done

def test_builtin_voices_listed(server):
    body = httpx.get(f"{server.http}/api/v1/voices").json()
    voices = {v["id"]: v for v in body["voices"]}
    assert body["default"] == "default"
    assert voices["default"]["isDefault"] and voices["default"]["builtIn"] and voices["default"]["provisioned"]
    assert voices["default"]["mode"] == "xvector"  # x-vector clone: a short prompt, fast first audio
    assert voices["makima"]["provisioned"] is False and voices["makima"]["builtIn"]
    r = httpx.get(f"{server.http}/api/v1/voices/default/audio")
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
    wav, sr = sf.read(io.BytesIO(r.content))
    assert sr == 24000 and wav.ndim == 1 and 3 < len(wav) / sr < 20
    missing = httpx.get(f"{server.http}/api/v1/voices/makima/audio")
    assert missing.status_code == 404 and "reference.wav" in missing.json()["error"]["message"]


def test_upload_use_delete(start_server, tmp_path):
    srv = start_server(data_dir=tmp_path / "data")
    outside_before = tree(tmp_path) - tree(tmp_path / "data")
    r = upload(srv, clip(2.0), id="alice", transcript="Hello world.", name="Alice", language="English")
    assert r.status_code == 201, r.text
    voice = r.json()
    assert voice["id"] == "alice" and voice["mode"] == "icl" and voice["language"] == "english"
    assert voice["builtIn"] is False and voice["createdAt"]
    r = upload(srv, clip(1.5, sr=44100, channels=2))  # no id, no transcript: x-vector voice, generated id
    assert r.status_code == 201 and r.json()["mode"] == "xvector"
    generated = r.json()["id"]

    ids = {v["id"] for v in httpx.get(f"{srv.http}/api/v1/voices").json()["voices"]}
    assert {"alice", generated, "default"} <= ids
    ref = httpx.get(f"{srv.http}/api/v1/voices/alice/audio")
    wav, sr = sf.read(io.BytesIO(ref.content))
    assert sr == 24000 and abs(len(wav) - 48000) <= 1  # normalised to 24 kHz mono

    async def speak_with(voice_id: str) -> dict:
        c = await Client.open(f"{srv.ws}?voice={voice_id}&audioTransport=none")
        await c.recv_json("ready")
        await c.send(type="speak", utteranceId="v", text="Hello world.")
        done, _ = await c.until_terminal("v")
        await c.close()
        return done

    assert run(speak_with("alice"))["type"] == "complete"
    assert run(speak_with(generated))["type"] == "complete"

    assert httpx.delete(f"{srv.http}/api/v1/voices/alice").status_code == 204
    assert httpx.get(f"{srv.http}/api/v1/voices/alice").status_code == 404
    assert httpx.delete(f"{srv.http}/api/v1/voices/alice").status_code == 404
    assert httpx.delete(f"{srv.http}/api/v1/voices/default").status_code == 403
    assert tree(tmp_path) - tree(tmp_path / "data") == outside_before  # nothing written outside the data dir


def test_malformed_uploads(start_server):
    srv = start_server(max_upload_bytes=600_000)
    cases = [
        (b"this is not audio at all" * 10, 415, "WAV"),
        (os.urandom(5000), 415, "WAV"),
        (b"", 422, "empty"),
        (clip(0.3), 422, "at least"),
        (clip(31.0, sr=8000), 422, "at most"),
        (clip(2.0, channels=3), 422, "channels"),
        (clip(20.0, sr=16000), 413, "limit"),
        (np.zeros(48000, np.int16).tobytes(), 415, "WAV"),  # headerless PCM
    ]
    for audio, status, hint in cases:
        r = upload(srv, audio)
        assert r.status_code == status, (status, r.text)
        assert hint in r.json()["error"]["message"]
    silent = io.BytesIO()
    sf.write(silent, np.zeros(48000, np.float32), 24000, format="WAV")
    r = upload(srv, silent.getvalue())
    assert r.status_code == 422 and "silent" in r.json()["error"]["message"]
    flac = upload(srv, clip(2.0, fmt="FLAC"), filename="clip.flac", id="flac-voice")
    assert flac.status_code == 201
    assert upload(srv, clip(2.0), id="flac-voice").status_code == 409
    assert upload(srv, clip(2.0), id="default").status_code == 409
    assert upload(srv, clip(2.0), language="klingon").status_code == 422
    r = httpx.post(f"{srv.http}/api/v1/voices", data={"id": "x"})
    assert r.status_code == 422  # no file at all


@pytest.mark.parametrize("bad_id", ["../evil", "..", "a/b", "UPPER", "-lead", "x" * 65, "sp ace", ".hidden"])
def test_hostile_ids(start_server, tmp_path, bad_id):
    srv = start_server(data_dir=tmp_path / "data")
    srv.wait_loaded()  # loading caches the default voice's prompt in the data dir; snapshot after that
    before = tree(tmp_path)
    r = upload(srv, clip(2.0), id=bad_id)
    assert r.status_code == 422 and "invalid voice id" in r.json()["error"]["message"]
    quoted = httpx.URL(f"{srv.http}/api/v1/voices/").join(bad_id.replace("/", "%2F"))
    for method in ("GET", "DELETE"):
        assert httpx.request(method, quoted).status_code in (404, 422)
    assert tree(tmp_path) == before


def test_uploaded_voice_survives_restart(start_server, tmp_path):
    data = tmp_path / "data"
    first = start_server(data_dir=data)
    assert upload(first, clip(2.0), id="keeper", transcript="Hello world.").status_code == 201
    prompts = list((data / "voices" / "keeper").rglob("prompt-*.safetensors"))
    assert len(prompts) == 1
    stamp = prompts[0].stat().st_mtime_ns
    first.stop()

    second = start_server(data_dir=data)
    voice = httpx.get(f"{second.http}/api/v1/voices/keeper").json()
    assert voice["mode"] == "icl" and voice["transcript"] == "Hello world."

    assert run(speak_once(second, "keeper", "Hello again."))["type"] == "complete"
    assert prompts[0].stat().st_mtime_ns == stamp  # the saved prompt was reused, not recomputed


def test_delete_removes_the_clip_transcript_and_every_prompt(start_server, tmp_path):
    data = tmp_path / "data"
    srv = start_server(data_dir=data)
    assert upload(srv, clip(2.0), id="carol", transcript="Personal words.").status_code == 201

    assert run(speak_once(srv, "carol", "Hello."))["type"] == "complete"
    store, fingerprint = srv.services.voices, srv.services.models.tts.fingerprint
    before = tree(data)
    mine = {p for p in before if "carol" in p}
    names = {os.path.basename(p) for p in mine}
    assert "voice.json" in names and any(n.startswith("reference-") and n.endswith(".wav") for n in names)
    assert any(n.startswith("prompt-") for n in names)
    assert "Personal words." in (data / "voices" / "carol" / "voice.json").read_text()
    assert store.cached_prompt("carol", fingerprint) is not None

    assert httpx.delete(f"{srv.http}/api/v1/voices/carol").status_code == 204
    after = tree(data)
    assert after == before - mine and not any("carol" in p for p in after)
    assert store.cached_prompt("carol", fingerprint) is None
    assert not any(key[0] == "carol" for key in store.prompts._lru)
    assert not any("Personal words." in open(p, "rb").read().decode("latin-1") for p in after)
