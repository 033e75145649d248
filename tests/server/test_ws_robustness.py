"""The WebSocket server under abuse: cancel storms, disconnects, oversized and invalid frames, clients that
stop reading, admission (Origin, tokens, capacity), idle timeout, model loading, engine errors, and several
sessions sharing one engine."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import httpx
import pytest
from server_helpers import TIMEOUT, Client, run
from websockets.exceptions import ConnectionClosed, InvalidStatus
from ws_raw import RawWebSocket

SENTENCE = "Hello there, this is a test."
LONG_TEXT = " ".join(["The quick brown fox jumps over the lazy dog."] * 6)
TERMINALS = ("complete", "cancelled", "error")


def wait_until(predicate, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.02)


@pytest.mark.parametrize("transport", ["binary", "base64"])
def test_cancel_storm(server, transport):
    """Hundreds of speak+cancel pairs: exactly one terminal each, and no audio after a terminal."""
    n = 200 if transport == "binary" else 100

    async def main():
        c = await Client.open(f"{server.ws}?audioTransport={transport}&sampleRate=16000")
        await c.recv_json("ready")
        for i in range(n):
            await c.send(type="speak", utteranceId=f"s{i}", text=SENTENCE)
            await c.send(type="cancel", utteranceId=f"s{i}")
        terminals: dict[str, str] = {}
        speaking: str | None = None  # the utterance whose audio may arrive now
        while len(terminals) < n:
            msg = await c.recv()
            if isinstance(msg, bytes):
                assert speaking is not None and speaking not in terminals, "audio outside an utterance"
                continue
            uid = msg.get("utteranceId")
            if msg["type"] == "speaking":
                assert uid not in terminals
                speaking = uid
            elif msg["type"] == "audioChunk":
                assert uid not in terminals, "audio after the terminal"
            elif msg["type"] in TERMINALS:
                assert uid is not None and uid not in terminals, f"second terminal for {uid}"
                terminals[uid] = msg["type"]
                if speaking == uid:
                    speaking = None
            else:  # every cancel names a live utterance, so nothing else may come
                pytest.fail(f"unexpected message {msg}")
        assert set(terminals) == {f"s{i}" for i in range(n)}
        assert set(terminals.values()) <= {"cancelled", "complete"}
        await c.send(type="ping", id="after")
        assert (await c.recv_json()) == {"type": "pong", "id": "after"}
        await c.close()

    run(main())
    wait_until(lambda: server.services.models.engine.busy_streams == 0, "engine idle after the storm")


def test_disconnect_mid_stream_frees_the_engine(start_server):
    srv = start_server(max_frames=0)  # the engine's own budget: hundreds of frames for LONG_TEXT
    srv.wait_loaded()
    engine = srv.services.models.engine

    async def main():
        c = await Client.open(srv.ws)
        await c.recv_json("ready")
        await c.send(type="speak", utteranceId="long", text=LONG_TEXT)
        await c.recv_json("speaking")
        for _ in range(2):
            assert isinstance(await c.recv(), bytes)
        assert engine.busy_streams == 1
        c.conn.transport.abort()  # vanish without a close handshake

    run(main())
    wait_until(lambda: engine.busy_streams == 0, "the engine job of a vanished client to be cancelled")
    wait_until(lambda: not srv.services.sessions, "the session to be dropped")
    metrics = httpx.get(f"{srv.http}/metrics").text
    assert 'tts_utterances_total{outcome="disconnect",transport="binary"} 1.0' in metrics


def test_oversized_and_invalid_utf8_frames(server):
    async def main():
        bystander = await Client.open(server.ws)
        await bystander.recv_json("ready")

        big = await Client.open(server.ws)
        await big.recv_json("ready")
        await big.conn.send(b"\xff" * (1 << 20))  # 1 MiB of garbage
        with pytest.raises(ConnectionClosed):
            await big.recv()
        assert big.conn.close_code == 1009

        raw = await asyncio.to_thread(RawWebSocket, server.port)
        assert raw.status == 101
        await asyncio.to_thread(raw.read_frame)  # ready
        await asyncio.to_thread(raw.send_text, b'{"type": "speak", "text": "\xc3\x28"}')
        frames, code = await asyncio.to_thread(raw.read_until_close)
        assert code == 1007  # invalid UTF-8 in a text frame
        raw.close()

        await bystander.send(type="speak", utteranceId="still", text=SENTENCE)
        done, _ = await bystander.until_terminal("still")
        assert done["type"] == "complete"
        await bystander.close()

    run(main())


def test_slow_consumer_is_cut(start_server):
    srv = start_server(max_frames=0, outbound_queue_messages=8, sndbuf=4096)
    srv.wait_loaded()
    raw = RawWebSocket(srv.port, path="/api/v1/speak?sampleRate=48000&encoding=pcm32f", rcvbuf=4096)
    raw.send_text(json.dumps({"type": "speak", "utteranceId": "slow", "text": LONG_TEXT * 3}).encode())
    # never read: the server must give up on this client instead of buffering its audio
    wait_until(lambda: not srv.services.sessions, "the slow session to be cut")
    wait_until(lambda: srv.services.models.engine.busy_streams == 0, "its engine job to be cancelled")
    assert 'tts_errors_total{code="SLOW_CONSUMER"} 1.0' in httpx.get(f"{srv.http}/metrics").text
    frames, code = raw.read_until_close()
    # the server closed the connection: with a close frame saying 4009, or, when that frame could not get
    # past the unread audio within the close timeout, by dropping the connection (None: end of stream)
    assert code == 4009 or (code is None and frames), (code, len(frames))
    raw.close()


def test_concurrent_sessions_share_the_engine(server):
    async def one(i: int) -> dict:
        c = await Client.open(f"{server.ws}?audioTransport=base64")
        await c.recv_json("ready")
        results = []
        for k in range(3):
            await c.send(type="speak", utteranceId=f"c{i}-{k}", text=SENTENCE)
            done, _ = await c.until_terminal(f"c{i}-{k}")
            results.append(done)
        await c.close()
        return results

    async def main():
        return await asyncio.gather(*(one(i) for i in range(6)))

    for results in run(main()):
        assert [r["type"] for r in results] == ["complete"] * 3


def test_origin_allowlist(start_server):
    srv = start_server(allowed_origins=["https://app.example"])

    async def main():
        with pytest.raises(InvalidStatus) as refused:
            await Client.open(srv.ws, origin="https://evil.example")
        assert refused.value.response.status_code == 403
        c = await Client.open(srv.ws, origin="https://app.example")
        assert (await c.recv_json())["type"] == "ready"
        await c.close()
        c = await Client.open(srv.ws)  # no Origin: curl, wscat, agents
        assert (await c.recv_json())["type"] == "ready"
        await c.close()

    run(main())


def test_default_origin_is_the_servers_own(server):
    async def main():
        with pytest.raises(InvalidStatus) as refused:
            await Client.open(server.ws, origin="http://localhost:1")
        assert refused.value.response.status_code == 403
        c = await Client.open(server.ws, origin=f"http://127.0.0.1:{server.port}")
        assert (await c.recv_json())["type"] == "ready"
        await c.close()

    run(main())


def test_tokens(start_server):
    srv = start_server(auth_tokens="s3cret,other", log_level="info")
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    keep = Keep()
    logging.getLogger("uvicorn.error").addHandler(keep)

    async def ok(client: Client) -> None:
        await client.recv_json("ready")
        await client.send(type="ping", id=1)
        assert await client.recv_json() == {"type": "pong", "id": 1}
        await client.close()

    async def refused(client: Client, first: dict | None = None) -> None:
        if first is not None:  # no token yet: the session opens and waits for start.authToken
            await client.recv_json("ready")
            await client.send(**first)
        err = await client.recv_json()
        assert err["code"] == "UNAUTHORIZED" and err["recoverable"] is False
        await client.conn.wait_closed()
        assert client.conn.close_code == 4001

    async def main():
        await ok(await Client.open(srv.ws, additional_headers={"Authorization": "Bearer s3cret"}))
        browser = await Client.open(srv.ws, subprotocols=["tts.v1", "tts.token.other"])
        assert browser.conn.subprotocol == "tts.v1"  # the token entry is never echoed
        await ok(browser)
        await ok(await Client.open(f"{srv.ws}?token=s3cret"))
        with_start = await Client.open(srv.ws)
        await with_start.recv_json("ready")
        await with_start.send(type="start", authToken="s3cret")
        assert (await with_start.recv_json())["type"] == "started"
        await with_start.close()

        await refused(await Client.open(srv.ws, additional_headers={"Authorization": "Bearer wrong"}))
        await refused(await Client.open(f"{srv.ws}?token=wrong"))
        await refused(await Client.open(srv.ws), {"type": "speak", "text": SENTENCE})
        await refused(await Client.open(srv.ws), {"type": "start", "authToken": "nope"})

    try:
        run(main())
    finally:
        logging.getLogger("uvicorn.error").removeHandler(keep)
    assert any("token=[redacted]" in r for r in records)
    assert not any("s3cret" in r or "wrong" in r for r in records)  # tokens are never logged


def test_idle_timeout(start_server):
    srv = start_server(idle_timeout_s=0.5)

    async def main():
        c = await Client.open(srv.ws)
        ready = await c.recv_json("ready")
        assert ready["limits"]["idleTimeoutS"] == 0.5
        assert await c.recv_json() == {"type": "stopped", "reason": "idle_timeout"}
        await c.conn.wait_closed()
        assert c.conn.close_code == 4008

        # an utterance whose text stays open while the client says nothing does not keep the session alive
        c = await Client.open(f"{srv.ws}?audioTransport=none")
        await c.recv_json("ready")
        await c.send(type="speak", utteranceId="open", text="Still thinking, ", **{"continue": True})
        terminal, seen = await c.until_terminal("open")
        assert terminal["type"] == "cancelled"
        assert await c.recv_json() == {"type": "stopped", "reason": "idle_timeout"}

    run(main())


def test_server_busy(start_server):
    srv = start_server(max_sessions=1)

    async def main():
        first = await Client.open(srv.ws)
        await first.recv_json("ready")
        second = await Client.open(srv.ws)
        err = await second.recv_json()
        assert err["code"] == "SERVER_BUSY"
        await second.conn.wait_closed()
        assert second.conn.close_code == 1013
        await first.close()

    run(main())


def test_model_loading_answer_then_ready(start_server):
    srv = start_server(preload=False, queue_while_loading=False)
    assert httpx.get(f"{srv.http}/ready").json()["modelState"] == "not_loaded"

    async def main():
        c = await Client.open(srv.ws)
        ready = await c.recv_json("ready")
        assert ready["modelState"] == "not_loaded"
        await c.send(type="speak", utteranceId="early", text=SENTENCE)
        err = await c.recv_json()
        assert (err["code"], err["utteranceId"], err["recoverable"]) == ("MODEL_LOADING", "early", True)
        assert err["retryAfterMs"] > 0
        await asyncio.to_thread(srv.wait_loaded)
        await c.send(type="speak", utteranceId="later", text=SENTENCE)
        done, _ = await c.until_terminal("later")
        assert done["type"] == "complete"
        await c.close()

    run(main())


def test_speak_while_loading_is_queued(start_server):
    srv = start_server(preload=False, warmup=True)

    async def main():
        c = await Client.open(f"{srv.ws}?audioTransport=none")
        assert (await c.recv_json("ready"))["modelState"] == "not_loaded"
        await c.send(type="speak", utteranceId="waits", text=SENTENCE)
        done, _ = await c.until_terminal("waits")
        assert done["type"] == "complete"
        await c.close()

    run(main())
    status = httpx.get(f"{srv.http}/ready").json()
    assert status["modelState"] == "loaded" and status["progress"] == 1.0


def test_model_missing_is_reported(start_server, tmp_path):
    srv = start_server(model_id=str(tmp_path / "no-such-model"), preload=False)

    async def main():
        c = await Client.open(srv.ws)
        await c.recv_json("ready")
        await c.send(type="speak", utteranceId="u", text=SENTENCE)
        err = await c.recv_json()
        assert (err["type"], err["code"], err["utteranceId"]) == ("error", "SYNTHESIS_ERROR", "u")
        assert "no-such-model" in err["message"]
        await c.close()

    run(main())
    ready = httpx.get(f"{srv.http}/ready")
    assert ready.status_code == 503 and "no-such-model" in ready.json()["error"]


def test_engine_error_is_a_terminal(start_server):
    srv = start_server(max_frames=100_000)  # more than the context holds: the engine refuses the request

    async def main():
        c = await Client.open(srv.ws)
        await c.recv_json("ready")
        await c.send(type="speak", utteranceId="e", text=SENTENCE)
        err, _ = await c.until_terminal("e")
        assert (err["type"], err["code"]) == ("error", "SYNTHESIS_ERROR") and "max_frames" in err["message"]
        await c.send(type="ping")
        assert await c.recv_json() == {"type": "pong"}
        await c.close()

    run(main())
