"""synthesis.py: streamed text (`continue: true`) on a real server, as a client sees it.

With `text_input` "stream" (the default) the text feeds one engine job as it arrives: audio starts
before the text ends, with no sentence boundary in sight. With "segment" the server's segmenter waits
for a boundary. A text left open closes itself after `text_open_timeout_s`; cancel works mid-stream;
the character limit covers the whole streamed text.
"""

from __future__ import annotations

import pytest
from server_helpers import Client, run, server_factory


def kinds(seen) -> list[str]:
    return [m["type"] if isinstance(m, dict) else "audio" for m in seen]


@pytest.fixture(scope="module")
def stream_server(tiny_model, tmp_path_factory):
    with server_factory(tiny_model, tmp_path_factory.mktemp("data"), loaded=True) as start:
        yield start(max_frames=40)


async def first_audio(c: Client) -> list[str]:
    """Messages up to the first audio (it must come before any terminal)."""
    seen = []
    while not seen or seen[-1] != "audio":
        msg = await c.recv()
        seen.append(msg["type"] if isinstance(msg, dict) else "audio")
        assert seen[-1] not in ("complete", "cancelled", "error"), seen
    return seen


def test_streamed_text_speaks_before_the_text_ends(stream_server):
    async def main():
        c = await Client.open(stream_server.ws)
        ready = await c.recv_json("ready")
        assert ready["capabilities"]["streamingTextInput"] is True
        parts = ["Sure, the weather in Paris", " is sunny and warm with a light breeze from the", " west.", ""]
        await c.send(type="speak", utteranceId="s", text=parts[0], **{"continue": True})
        assert await first_audio(c) == ["speaking", "audio"]  # no boundary yet: the talker has begun anyway
        await c.send(type="speak", utteranceId="s", text=parts[1], **{"continue": True})
        await c.send(type="speak", utteranceId="s", text=parts[2], **{"continue": True})
        await c.send(type="speak", utteranceId="s", text=parts[3], **{"continue": False})
        done, seen = await c.until_terminal("s")
        assert done["type"] == "complete" and done["charactersProcessed"] == sum(map(len, parts))
        assert "speaking" not in kinds(seen)  # one utterance, one `speaking`
        await c.close()

    run(main())


def test_segmenter_waits_for_a_boundary(start_server):
    srv = start_server(text_input="segment")

    async def main():
        c = await Client.open(srv.ws)
        ready = await c.recv_json("ready")
        assert ready["capabilities"]["streamingTextInput"] is False
        await c.send(type="speak", utteranceId="g", text="Sure, the weather in Paris", **{"continue": True})
        await c.send(type="ping", id=1)
        assert await c.recv() == {"type": "pong", "id": 1}  # nothing was spoken: no sentence yet
        await c.send(type="speak", utteranceId="g", text=" is sunny.", **{"continue": False})
        done, seen = await c.until_terminal("g")
        assert done["type"] == "complete" and kinds(seen)[0] == "speaking" and "audio" in kinds(seen)
        await c.close()

    run(main())


def test_text_left_open_closes_itself(start_server):
    srv = start_server(text_open_timeout_s=0.3, max_frames=10)

    async def main():
        c = await Client.open(srv.ws)
        await c.recv_json("ready")
        await c.send(type="speak", utteranceId="o", text="Let me think about", **{"continue": True})
        done, seen = await c.until_terminal("o")
        notice = next(m for m in seen if isinstance(m, dict) and m["type"] == "error")
        assert notice["code"] == "TEXT_TIMEOUT" and notice["recoverable"] and "'o'" in notice["message"]
        assert "utteranceId" not in notice  # a notice, not the utterance's terminal
        assert done["type"] == "complete" and done["frames"] >= 1
        await c.close()

    run(main())


def test_cancel_mid_stream_then_speak_again(stream_server):
    async def main():
        c = await Client.open(f"{stream_server.ws}")
        await c.recv_json("ready")
        await c.send(type="speak", utteranceId="c1", text="This text is still coming and", **{"continue": True})
        await first_audio(c)
        await c.send(type="cancel", utteranceId="c1")
        done, _ = await c.until_terminal("c1")
        assert done["type"] == "cancelled" and done["reason"] == "cancel"
        await c.send(type="speak", utteranceId="c2", text="A new one,", **{"continue": True})
        await c.send(type="speak", utteranceId="c3", text="Interrupting.", priority="interrupt")
        done, _ = await c.until_terminal("c2")
        assert done["type"] == "cancelled" and done["reason"] == "interrupt"
        done, _ = await c.until_terminal("c3")
        assert done["type"] == "complete"
        await c.close()

    run(main())


def test_character_limit_covers_the_whole_streamed_text(start_server):
    srv = start_server(max_text_chars=30)

    async def main():
        c = await Client.open(srv.ws)
        await c.recv_json("ready")
        await c.send(type="speak", utteranceId="l", text="Twenty characters, ok", **{"continue": True})
        await c.send(type="speak", utteranceId="l", text=" and twenty more here", **{"continue": True})
        done, _ = await c.until_terminal("l")
        assert done["type"] == "error" and done["code"] == "INVALID_TEXT" and "30" in done["message"]
        await c.close()

    run(main())
