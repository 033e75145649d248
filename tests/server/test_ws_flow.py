"""WebSocket protocol v1 against a real server and the real engine (tiny checkpoint): every message type,
every transport and rate, streaming text, priorities, cancel and stop — once per voice store backend (a
directory, and real S3 servers: moto, rclone), the voice every test speaks being an uploaded one there."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from server_helpers import Client, ServerThread, make_settings, run

from makima_tts.server.settings import SAMPLE_RATES

SENTENCE = "Hello there, this is a test."


@pytest.fixture(scope="module", params=["dir", "moto", "rclone"])
def server(request, tiny_model, tiny_tts, tmp_path_factory):
    """A server with no built-in voices whose `default` voice is an upload in the store under test."""
    from s3_servers import S3Server

    from makima_tts.voices import VoiceStore, open_objects

    root = tmp_path_factory.mktemp(f"flow-{request.param}")
    s3 = None
    with pytest.MonkeyPatch.context() as env:
        if request.param == "dir":
            url = str(root / "store")
        else:
            s3 = S3Server(request.param, root / "s3").start()
            url = s3.url()
            for name, value in s3.env().items():
                env.setenv(name, value)
        lenient = request.param == "rclone"  # it ignores If-None-Match (tests/s3_servers.py)
        seed = VoiceStore(root / "no-builtins", root / "seed", allow_unconditional=lenient,
                          objects=open_objects(url, root, addressing_style="path"))
        wav = (0.3 * np.sin(np.arange(48000) / 10)).astype(np.float32)
        seed.add("default", wav, model=tiny_tts, transcript="Hello from the store.")
        settings = make_settings(tiny_model, root / "data", voices_dir=root / "no-builtins", voice_store=url,
                                 voice_store_allow_unconditional=lenient, s3_addressing_style="path")
        srv = ServerThread(settings).start()
        try:
            srv.wait_loaded()
            assert srv.services.voices.get("default").built_in is False
            yield srv
        finally:
            srv.stop()
            if s3 is not None:
                s3.stop()


def audio_of(seen: list) -> list[bytes]:
    return [m for m in seen if isinstance(m, bytes)]


@pytest.mark.parametrize("transport", ["binary", "base64", "none"])
@pytest.mark.parametrize("rate", SAMPLE_RATES)
def test_one_message_per_frame(server, rate, transport):
    """Every generated frame is one audio message, at every rate: a resampler's tail goes out with the
    last frame, never as a message of its own. The server's budget is 4 frames (random weights never end
    earlier), so each utterance is 4 frames and 4 messages (none with audioTransport "none")."""

    async def main():
        c = await Client.open(f"{server.ws}?sampleRate={rate}&audioTransport={transport}")
        await c.recv_json("ready")
        await c.send(type="speak", utteranceId="m", text=SENTENCE)
        done, seen = await c.until_terminal("m")
        await c.close()
        return done, seen

    done, seen = run(main())
    assert done["type"] == "complete" and done["truncated"] and done["frames"] == 4
    if transport == "binary":
        messages = audio_of(seen)
        samples = sum(len(m) for m in messages) // 2
    else:
        chunks = [m for m in seen if isinstance(m, dict) and m["type"] == "audioChunk"]
        assert not audio_of(seen)
        messages = chunks
        samples = sum(len(base64.b64decode(m["data"])) for m in chunks) // 2
        if chunks:
            assert [m["sequenceNumber"] for m in chunks] == [0, 1, 2, 3]
            assert [m["isFinal"] for m in chunks] == [False, False, False, True]
    assert len(messages) == (0 if transport == "none" else 4)
    if transport != "none":  # 80 ms per frame, up to the resampler's rounding of one sample
        assert abs(samples - 4 * rate * 80 // 1000) <= 1
        assert done["audioLengthMs"] == pytest.approx(samples * 1000 / rate, abs=1e-3)


def test_full_flow(server):
    async def main():
        c = await Client.open(server.ws, subprotocols=["tts.v1"])
        assert c.conn.subprotocol == "tts.v1"
        ready = await c.recv_json()
        assert ready["type"] == "ready" and ready["modelState"] == "loaded"
        caps = ready["capabilities"]
        assert caps["protocol"] == "tts.v1" and caps["streamingInput"] and "english" in caps["languages"]
        assert caps["sampleRates"] == list(SAMPLE_RATES) and caps["maxTextChars"] == 5000
        assert ready["audioFormat"] == {"encoding": "pcm16", "sampleRate": 24000, "channels": 1}
        assert ready["limits"]["maxMessageBytes"] == 65536

        await c.send(type="start", voice="default", encoding="pcm16", sampleRate=24000, language="English")
        started = await c.recv_json()
        assert started == {
            "type": "started", "sampleRate": 24000, "encoding": "pcm16", "voice": "default",
            "language": "english", "audioTransport": "binary",
        }
        await c.send(type="speak", utteranceId="u1", text="Hello, I am Makima.")
        done, seen = await c.until_terminal("u1")
        assert seen[0] == {"type": "speaking", "utteranceId": "u1", "sampleRate": 24000, "encoding": "pcm16"}
        frames = audio_of(seen)
        assert done["type"] == "complete" and done["frames"] == len(frames) >= 1
        assert all(len(f) == 1920 * 2 for f in frames)  # one 80 ms frame per message at 24 kHz
        assert done["audioLengthMs"] == pytest.approx(80 * len(frames))
        assert done["charactersProcessed"] == len("Hello, I am Makima.")
        assert done["ttfaMs"] >= 0 and done["durationMs"] >= done["ttfaMs"]
        assert done["truncated"] == (done["frames"] == 4)  # the server's budget is 4 frames

        await c.send(type="ping", id="p1")
        assert await c.recv_json() == {"type": "pong", "id": "p1"}
        await c.send(type="stop")
        assert await c.recv_json() == {"type": "stopped", "reason": "user_requested"}
        await c.conn.wait_closed()
        assert c.conn.close_code == 1000

    run(main())


@pytest.mark.parametrize("encoding,width", [("pcm16", 2), ("pcm32f", 4)])
@pytest.mark.parametrize("rate", SAMPLE_RATES)
def test_rates_and_encodings(server, rate, encoding, width):
    async def main():
        c = await Client.open(f"{server.ws}?sampleRate={rate}&encoding={encoding}")
        ready = await c.recv_json("ready")
        assert ready["audioFormat"] == {"encoding": encoding, "sampleRate": rate, "channels": 1}
        await c.send(type="speak", utteranceId="r", text=SENTENCE)
        done, seen = await c.until_terminal("r")
        assert done["type"] == "complete"
        data = b"".join(audio_of(seen))
        assert len(data) % width == 0 and done["frames"] == len(audio_of(seen))
        samples = len(data) // width
        assert done["audioLengthMs"] == pytest.approx(samples * 1000 / rate, abs=1e-3)
        # The streaming resampler is continuous and flushed: the output is exactly 80 ms per engine frame
        # (up to the resampler's rounding of one sample).
        per_frame = rate * 80 // 1000
        engine_frames = round(samples / per_frame)
        assert engine_frames >= 1 and abs(samples - engine_frames * per_frame) <= 1
        dtype = "<i2" if encoding == "pcm16" else "<f4"
        pcm = np.frombuffer(data, dtype=dtype).astype(np.float64)
        assert np.isfinite(pcm).all()
        await c.close()

    run(main())


def test_base64_transport(server):
    async def main():
        c = await Client.open(server.ws)
        await c.recv_json("ready")
        await c.send(type="start", audioTransport="base64", sampleRate=16000)
        assert (await c.recv_json())["audioTransport"] == "base64"
        await c.send(type="speak", utteranceId="b", text=SENTENCE)
        done, seen = await c.until_terminal("b")
        assert not audio_of(seen)
        chunks = [m for m in seen if isinstance(m, dict) and m["type"] == "audioChunk"]
        assert done["frames"] == len(chunks) >= 1
        assert [ch["sequenceNumber"] for ch in chunks] == list(range(len(chunks)))
        assert [ch["isFinal"] for ch in chunks] == [False] * (len(chunks) - 1) + [True]
        offset = 0
        for ch in chunks:
            assert ch["utteranceId"] == "b" and ch["timestampMs"] == pytest.approx(offset * 1000 / 16000, abs=1e-3)
            offset += len(base64.b64decode(ch["data"])) // 2
        assert done["audioLengthMs"] == pytest.approx(offset * 1000 / 16000, abs=1e-3)
        await c.close()

    run(main())


def test_none_transport(server):
    async def main():
        c = await Client.open(f"{server.ws}?audioTransport=none")
        await c.recv_json("ready")
        await c.send(type="speak", text=SENTENCE)  # no id: the server makes one
        speaking = await c.recv_json()
        uid = speaking["utteranceId"]
        assert speaking["type"] == "speaking" and uid
        done, seen = await c.until_terminal(uid)
        assert done["type"] == "complete" and not audio_of(seen)
        assert not [m for m in seen if m["type"] == "audioChunk"]
        assert done["frames"] >= 1 and done["audioLengthMs"] == pytest.approx(80 * done["frames"])
        await c.close()

    run(main())


def test_streaming_text_with_flush(server):
    async def main():
        c = await Client.open(server.ws)
        await c.recv_json("ready")
        parts = ["Sure, the weather ", "in Paris is sunny today. ", "Tomorrow it", " will rain."]
        await c.send(type="speak", utteranceId="s", text=parts[0], **{"continue": True})
        await c.send(type="speak", utteranceId="s", text=parts[1], **{"continue": True})
        await c.send(type="speak", utteranceId="s", text=parts[2], **{"continue": True})
        await c.send(type="flush", utteranceId="s")
        await c.send(type="speak", utteranceId="s", text=parts[3], **{"continue": False})
        done, seen = await c.until_terminal("s")
        types = [m["type"] if isinstance(m, dict) else "audio" for m in seen]
        assert types.count("speaking") == 1 and types[0] == "speaking"
        assert types.count("flushed") == 1 and types.index("flushed") < types.index("complete")
        flushed = next(m for m in seen if isinstance(m, dict) and m["type"] == "flushed")
        audio_before_flush = sum(len(m) for m in seen[: seen.index(flushed)] if isinstance(m, bytes)) // 2
        assert flushed["audioMs"] == pytest.approx(audio_before_flush * 1000 / 24000, abs=1e-3)
        assert done["type"] == "complete" and done["charactersProcessed"] == sum(map(len, parts))
        # two passages, before and after the flush (each up to the test's 4-frame cap; more when that cap
        # ends one before its text does: the rest starts the next)
        assert done["frames"] == len(audio_of(seen)) >= 3
        await c.close()

    run(main())


def test_flush_without_anything_pending(server):
    async def main():
        c = await Client.open(server.ws)
        await c.recv_json("ready")
        await c.send(type="flush")
        assert await c.recv_json() == {"type": "flushed", "audioMs": 0.0}
        await c.close()

    run(main())


def test_cancel_current_and_queued(server):
    async def main():
        c = await Client.open(server.ws)
        await c.recv_json("ready")
        for uid in ("a", "b", "c"):
            await c.send(type="speak", utteranceId=uid, text=SENTENCE)
        await c.recv_json("speaking")
        await c.send(type="cancel", utteranceId="b", playedMs=0)
        await c.send(type="cancel")  # everything else
        terminals = {}
        while len(terminals) < 3:
            msg = await c.recv()
            if isinstance(msg, dict) and msg["type"] in ("complete", "cancelled", "error"):
                assert msg["utteranceId"] not in terminals
                terminals[msg["utteranceId"]] = msg
        assert terminals["b"]["type"] == "cancelled" and terminals["b"]["reason"] == "cancel"
        assert terminals["b"]["audioSentMs"] == 0
        assert terminals["c"]["type"] == "cancelled"
        await c.send(type="ping")
        assert await c.recv_json() == {"type": "pong"}  # nothing else arrives after the terminals
        await c.close()

    run(main())


def test_interrupt_and_high_priority(server):
    async def main():
        c = await Client.open(f"{server.ws}?audioTransport=none")
        await c.recv_json("ready")
        await c.send(type="speak", utteranceId="first", text=SENTENCE)
        await c.send(type="speak", utteranceId="n1", text=SENTENCE)
        await c.send(type="speak", utteranceId="n2", text=SENTENCE)
        await c.send(type="speak", utteranceId="hi", text=SENTENCE, priority="high")
        order = []
        while len(order) < 4:
            msg = await c.recv_json("complete", "cancelled", "error")
            order.append(msg["utteranceId"])
        assert order == ["first", "hi", "n1", "n2"]

        await c.send(type="speak", utteranceId="x1", text=SENTENCE)
        await c.send(type="speak", utteranceId="x2", text=SENTENCE)
        await c.send(type="speak", utteranceId="now", text=SENTENCE, priority="interrupt")
        got = {}
        while "now" not in got:
            msg = await c.recv_json("complete", "cancelled", "error")
            got[msg["utteranceId"]] = msg
        assert got["x1"]["type"] == "cancelled" and got["x1"]["reason"] == "interrupt"
        assert got["x2"]["type"] == "cancelled" and got["x2"]["reason"] == "interrupt"
        assert got["now"]["type"] == "complete"
        await c.close()

    run(main())


def test_stop_drain_finishes_queued_audio(server):
    async def main():
        c = await Client.open(f"{server.ws}?audioTransport=none")
        await c.recv_json("ready")
        await c.send(type="speak", utteranceId="d1", text=SENTENCE)
        await c.send(type="speak", utteranceId="d2", text="More text", **{"continue": True})
        await c.send(type="stop", mode="drain", reason="bye")
        await c.send(type="speak", utteranceId="late", text=SENTENCE)
        seen = []
        while True:
            msg = await c.recv_json()
            seen.append(msg)
            if msg["type"] == "stopped":
                break
        by_type = {(m["type"], m.get("utteranceId")) for m in seen}
        assert ("complete", "d1") in by_type and ("complete", "d2") in by_type
        assert ("error", "late") in by_type
        assert seen[-1] == {"type": "stopped", "reason": "bye"}
        await c.conn.wait_closed()
        assert c.conn.close_code == 1000

    run(main())


def test_stop_immediate_cancels(server):
    async def main():
        c = await Client.open(server.ws)
        await c.recv_json("ready")
        await c.send(type="speak", utteranceId="long", text=SENTENCE)
        await c.send(type="speak", utteranceId="queued", text=SENTENCE)
        await c.send(type="stop")
        seen = []
        while True:
            msg = await c.recv_json()
            seen.append(msg)
            if msg["type"] == "stopped":
                break
        terminals = [m for m in seen if m["type"] in ("complete", "cancelled")]
        assert sorted(m["utteranceId"] for m in terminals) == ["long", "queued"]
        assert seen[-1]["reason"] == "user_requested"

    run(main())


def test_invalid_messages_keep_the_session(server):
    async def main():
        c = await Client.open(server.ws)
        await c.recv_json("ready")
        for bad in ("{not json", "[1, 2]", '{"type": "dance"}', '{"type": "speak", "text": 5}'):
            await c.conn.send(bad)
            err = await c.recv_json()
            assert err["type"] == "error" and err["code"] == "INVALID_MESSAGE" and err["recoverable"] is True
        await c.conn.send(b"\x00\x01binary")
        err = await c.recv_json()
        assert err["code"] == "INVALID_MESSAGE"
        await c.send(type="ping", id=7, someUnknownField=True)
        assert await c.recv_json() == {"type": "pong", "id": 7}
        await c.close()

    run(main())


@pytest.mark.parametrize(
    "start,code",
    [
        ({"sampleRate": 12345}, "UNSUPPORTED_FORMAT"),
        ({"encoding": "mp3"}, "UNSUPPORTED_FORMAT"),
        ({"audioTransport": "carrier-pigeon"}, "UNSUPPORTED_FORMAT"),
        ({"voice": "nobody"}, "VOICE_NOT_FOUND"),
        ({"voice": "makima"}, "VOICE_NOT_FOUND"),  # manifest only: not provisioned
        ({"voice": "../../etc/passwd"}, "VOICE_NOT_FOUND"),
        ({"language": "klingon"}, "INVALID_MESSAGE"),
    ],
)
def test_bad_start(server, start, code):
    async def main():
        c = await Client.open(server.ws)
        await c.recv_json("ready")
        await c.send(type="start", **start)
        err = await c.recv_json()
        assert err["type"] == "error" and err["code"] == code and err["recoverable"] is True
        assert err["message"]
        await c.send(type="start")  # the session is still usable with its previous settings
        assert (await c.recv_json())["type"] == "started"
        await c.close()

    run(main())


def test_speak_rejections_are_terminals(server):
    async def main():
        c = await Client.open(server.ws)
        await c.recv_json("ready")
        cases = [
            ({"text": "   "}, "INVALID_TEXT"),
            ({"text": "x" * 5001}, "INVALID_TEXT"),
            ({"text": SENTENCE, "voice": "ghost"}, "VOICE_NOT_FOUND"),
            ({"text": SENTENCE, "language": "elvish"}, "INVALID_MESSAGE"),
        ]
        for i, (fields, code) in enumerate(cases):
            await c.send(type="speak", utteranceId=f"bad{i}", **fields)
            err = await c.recv_json()
            assert (err["type"], err["code"], err["utteranceId"]) == ("error", code, f"bad{i}")
        await c.send(type="speak", utteranceId="x" * 65, text=SENTENCE)
        err = await c.recv_json()
        assert err["code"] == "INVALID_MESSAGE" and "utteranceId" not in err
        await c.close()

    run(main())


def utterance_errors(server) -> float:
    return server.services.metrics.utterances.labels(outcome="error", transport="none")._value.get()


def test_invalid_state(server):
    async def main():
        c = await Client.open(f"{server.ws}?audioTransport=none")
        await c.recv_json("ready")
        failed_before = utterance_errors(server)
        await c.send(type="cancel", utteranceId="never")
        err = await c.recv_json()
        # it names the utterance it could not find (a client tells a raced cancel by the id, not the text);
        # no utterance failed, so the metric of failed utterances does not move
        assert err["code"] == "INVALID_STATE" and err["utteranceId"] == "never"
        await c.send(type="flush", utteranceId="nor-this")
        err = await c.recv_json()
        assert err["code"] == "INVALID_STATE" and err["utteranceId"] == "nor-this"
        assert utterance_errors(server) == failed_before
        await c.send(type="speak", utteranceId="dup", text=SENTENCE)
        await c.send(type="speak", utteranceId="dup", text=SENTENCE)
        await c.send(type="start", sampleRate=16000)
        errors, terminal = [], None
        while terminal is None:
            msg = await c.recv_json()
            if msg["type"] == "error":
                errors.append(msg)
            elif msg["type"] == "complete":
                terminal = msg
        assert [e["code"] for e in errors] == ["INVALID_STATE", "INVALID_STATE"]
        assert all("utteranceId" not in e for e in errors)  # the utterance "dup" has one terminal only
        await c.close()

    run(main())


def test_queue_full(server):
    async def main():
        c = await Client.open(f"{server.ws}?audioTransport=none")
        await c.recv_json("ready")
        # An utterance whose text stays open holds the player, so the queue fills whatever the store's speed.
        await c.send(type="speak", utteranceId="open", text=SENTENCE, **{"continue": True})
        ids = [f"q{i}" for i in range(40)]
        for uid in ids:
            await c.send(type="speak", utteranceId=uid, text=SENTENCE)
        await c.send(type="cancel")
        terminals = {}
        while len(terminals) < len(ids) + 1:
            msg = await c.recv_json("complete", "cancelled", "error")
            assert msg["utteranceId"] not in terminals
            terminals[msg["utteranceId"]] = msg
        codes = [m.get("code") for m in terminals.values() if m["type"] == "error"]
        assert codes and set(codes) == {"QUEUE_FULL"}
        await c.close()

    run(main())
