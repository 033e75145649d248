"""client/utterance.py: `Utterance.heard_text`, from the server's `complete.textMarks` or `cancelled.heardText`,
against the text the talker had read (decoded from token ids by the tokenizer file, as in
tests/server/test_text_marks.py): frame k of an x-vector utterance has read k + 1 text tokens."""

from __future__ import annotations

import asyncio

import pytest
from server_helpers import spoken_prefix

from makima_tts.client import SpeakClient
from makima_tts.text import TextTokenizer

TEXT = "The weather in Paris is sunny and warm with a light breeze from the west."


@pytest.fixture(scope="module")
def tokenizer(tiny_base_dir) -> TextTokenizer:
    return TextTokenizer.from_dir(tiny_base_dir)


def test_a_completed_utterance_is_heard_as_far_as_it_played(start_server, tiny_base_dir, tokenizer):
    srv = start_server(max_frames=150)  # enough frames to read the whole text

    async def main():
        async with SpeakClient(srv.ws) as client:
            utt = client.speak(TEXT)
            audio, _ = await utt.read_all()
            return utt, len(audio) // 2

    utt, samples = asyncio.run(asyncio.wait_for(main(), 120))
    assert utt.complete is not None and utt.heard_text() == TEXT  # played to the end: all of it was read
    assert utt.heard_text(0) == ""
    for frames in (1, 2, 5, 9):  # played into frame `frames - 1`
        assert utt.heard_text(80 * frames - 40) == spoken_prefix(tiny_base_dir, tokenizer, TEXT, frames)
    assert samples >= 9 * 1920


def test_a_cancelled_utterance_is_heard_as_the_server_says(start_server, tiny_base_dir, tokenizer):
    srv = start_server(max_frames=200)

    async def main():
        async with SpeakClient(srv.ws) as client:
            utt = client.append(TEXT)  # left open: it stays on the server
            chunks = 0
            async for _ in utt:
                chunks += 1
                if chunks == 4:
                    break
            await client.cancel(utt.id, played_ms=3 * 80 - 1)  # into frame 2: three frames heard
            await utt.wait()
            return utt

    utt = asyncio.run(asyncio.wait_for(main(), 120))
    assert utt.cancelled is not None and utt.heard_text(10_000) == utt.cancelled.heardText  # the server's word
    assert utt.heard_text() == spoken_prefix(tiny_base_dir, tokenizer, TEXT, 3)
