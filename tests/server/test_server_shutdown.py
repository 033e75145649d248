"""SIGTERM on `makima-tts serve` (a real process): every in-flight utterance gets its terminal, then
`stopped{server_shutdown}` and close 1001, and the process exits. A reply whose text is still open at
shutdown is spoken as far as it was sent within the grace, or cut at once without one."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
from server_helpers import REPO_VOICES, TIMEOUT, Client, run

LONG_TEXT = " ".join(["The quick brown fox jumps over the lazy dog."] * 6)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sigterm_ends_sessions_properly(tiny_model, tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "TTS_MODEL_ID": str(tiny_model),
        "TTS_DEVICE": "cpu",
        "TTS_DTYPE": "float32",  # as make_settings: no CPU kernel build in a test about shutdown
        "TTS_DATA_DIR": str(tmp_path / "data"),
        "TTS_VOICES_DIR": str(REPO_VOICES),
        "TTS_PRELOAD": "true",
        "TTS_WARMUP": "false",
        "TTS_SHUTDOWN_GRACE_S": "0.3",
        "TTS_LOG_LEVEL": "warning",
    }
    code = f"from makima_tts.server.run import serve; serve('127.0.0.1', {port}, None)"
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, "server did not come up"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready").json()["modelState"] == "loaded":
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)

        async def main():
            c = await Client.open(f"ws://127.0.0.1:{port}/api/v1/speak")
            await c.recv_json("ready")
            await c.send(type="speak", utteranceId="playing", text=LONG_TEXT)
            await c.send(type="speak", utteranceId="queued", text=LONG_TEXT)
            await c.recv_json("speaking")
            assert isinstance(await c.recv(), bytes)
            proc.send_signal(signal.SIGTERM)
            seen = []
            while True:
                msg = await c.recv_json()
                seen.append(msg)
                if msg["type"] == "stopped":
                    break
            await c.conn.wait_closed()
            return seen, c.conn.close_code

        seen, close_code = run(main())
        terminals = {m["utteranceId"]: m for m in seen if m["type"] in ("complete", "cancelled", "error")}
        assert set(terminals) == {"playing", "queued"}
        assert terminals["queued"]["code"] == "SERVER_BUSY"
        assert terminals["playing"]["type"] == "complete" or terminals["playing"]["code"] == "SERVER_BUSY"
        assert seen[-1] == {"type": "stopped", "reason": "server_shutdown"}
        assert close_code == 1001
        assert proc.wait(TIMEOUT) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(("grace", "terminal"), [(5.0, "complete"), (0.0, "error")])
def test_an_open_text_at_shutdown_ends_with_what_it_was_sent_or_at_once_without_grace(start_server, grace, terminal):
    """A voice agent's reply still streaming (its text open, its first sentence flushed and spoken): with a
    grace the server closes the text and the utterance ends `complete`; with none, `SERVER_BUSY` at once."""
    srv = start_server(shutdown_grace_s=grace)
    srv.wait_loaded()

    async def main():
        c = await Client.open(srv.ws)
        await c.recv_json("ready")
        await c.send(type="speak", utteranceId="reply", text="The first sentence is sent. ", **{"continue": True})
        await c.send(type="flush", utteranceId="reply")
        await c.recv_json("flushed")  # its audio is out (the test's 4-frame cap ends it); the text stays open
        stopping = asyncio.create_task(asyncio.to_thread(srv.stop))
        seen = [await c.recv_json()]
        while seen[-1]["type"] != "stopped":
            seen.append(await c.recv_json())
        await stopping
        return seen

    seen = run(main())
    assert [m["type"] for m in seen] == [terminal, "stopped"] and seen[-1]["reason"] == "server_shutdown"
    assert seen[0]["utteranceId"] == "reply"
    if terminal == "error":
        assert seen[0]["code"] == "SERVER_BUSY"
    else:
        assert seen[0]["charactersProcessed"] == len("The first sentence is sent. ")
