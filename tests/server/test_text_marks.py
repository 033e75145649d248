"""text_marks.py: the heard text of an utterance, `cancelled.heardText` and `complete.textMarks`.

The rule under test: a frame counts once any of it has played, and frame k of a streaming-text x-vector
utterance has read its first k + 1 text tokens (the engine's count is pinned to the reference layout in
tests/engine/test_text_feed.py). The expected texts here are decoded from token ids by the tokenizer
itself, not taken from the offsets the server uses.
"""

from __future__ import annotations

import pytest
from server_helpers import Client, run, spoken_prefix

from makima_tts.server.text_marks import TextMarks
from makima_tts.text import TextTokenizer

FRAME = 1920  # samples of one frame at 24 kHz
WORDS = "Sure the weather in Paris is sunny and warm with a light breeze from the west all day long".split()


@pytest.fixture(scope="module")
def tokenizer(tiny_model) -> TextTokenizer:
    return TextTokenizer.from_dir(tiny_model)


def test_heard_text_and_marks_agree_for_every_playback_point(tokenizer):
    marks = TextMarks()
    text = "  First sentence here.  Second one, a bit longer!"
    marks.receive(text)
    pieces = ["First sentence here.", "Second one, a bit longer!"]  # as split_text strips them
    frames = []
    for piece in pieces:
        marks.job(piece, tokenizer)
        n = len(tokenizer.assistant_ids(piece)[3:-5])
        for k in range(n + 4):  # an x-vector streaming job: k + 1 tokens read, then all of them
            marks.frame(FRAME, min(k + 1, n))
            frames.append((piece, min(k + 1, n)))
    listed = marks.marks(24000)
    assert "".join(t for _, t in listed) == text[: text.index("!") + 1]
    assert [ms for ms, _ in listed] == sorted({ms for ms, _ in listed})  # one mark per point, in order
    for played in range(0, len(frames) * FRAME + 1, FRAME // 3):
        by_marks = "".join(t for ms, t in listed if ms * 24 < played)
        assert marks.heard(played) == by_marks
    assert marks.heard(0) == ""
    first_done = sum(1 for piece, _ in frames if piece == pieces[0])
    assert marks.heard(first_done * FRAME + 1).startswith(text[: text.index(".") + 1] + "  ")  # job 1 whole


def test_a_whole_text_job_is_heard_whole_from_its_first_frame(tokenizer):
    marks = TextMarks()
    marks.receive("One sentence. Another.")
    marks.job("One sentence. Another.", tokenizer)
    n = len(tokenizer.assistant_ids("One sentence. Another.")[3:-5])
    for _ in range(5):
        marks.frame(FRAME, n)  # non-streaming text: the prefill read it all
    assert marks.heard(1) == "One sentence. Another." and marks.marks(24000) == [(0.0, "One sentence. Another.")]


@pytest.fixture
def long_server(start_server):
    srv = start_server(max_frames=200)
    srv.wait_loaded()
    return srv


def test_text_fed_per_frame_is_cut_at_played_ms(long_server, tiny_model, tokenizer):
    """An LLM-like client sends the next word each time a frame arrives, then cancels mid-frame 6."""

    async def main():
        c = await Client.open(long_server.ws)
        await c.recv_json("ready")
        sent, frames = " ".join(WORDS[:2]), 0  # two words: the first is a stable token (the last may grow)
        await c.send(type="speak", utteranceId="llm", text=sent, **{"continue": True})
        while frames < 9:
            msg = await c.recv()
            if isinstance(msg, bytes):
                frames += 1
                word = " " + WORDS[frames + 1]
                sent += word
                await c.send(type="speak", utteranceId="llm", text=word, **{"continue": True})
            else:
                assert msg["type"] in ("speaking", "audio"), msg
        await c.send(type="cancel", utteranceId="llm", playedMs=5.5 * 80)  # frames 0..5 heard, some of 5
        done, _ = await c.until_terminal("llm")
        await c.close()
        return done, sent

    done, sent = run(main())
    assert done["type"] == "cancelled" and done["audioSentMs"] >= 9 * 80
    assert done["heardText"] == spoken_prefix(tiny_model, tokenizer, sent, 6)
    assert done["heardText"] and sent.startswith(done["heardText"])


def test_complete_marks_cover_the_text_and_a_nameless_cancel_spares_the_queue(long_server, tiny_model, tokenizer):
    async def main():
        c = await Client.open(long_server.ws)
        await c.recv_json("ready")
        text = " ".join(WORDS[:8]) + "."
        await c.send(type="speak", utteranceId="whole", text=text)
        done, seen = await c.until_terminal("whole")
        assert done["type"] == "complete"
        marks = done["textMarks"]
        assert "".join(t for _, t in marks) == text  # the frames read the whole text
        assert all(ms % 80 == 0 for ms, _ in marks) and [ms for ms, _ in marks] == sorted(ms for ms, _ in marks)
        assert marks[-1][0] < done["audioLengthMs"]

        await c.send(type="speak", utteranceId="open", text=" ".join(WORDS), **{"continue": True})
        await c.send(type="speak", utteranceId="queued", text="Never heard.")
        await c.recv_json("speaking")
        await c.recv()  # its first audio
        await c.send(type="cancel", playedMs=1.0)  # the current one's first frame; the queued one unheard
        got = {}
        while len(got) < 2:
            msg = await c.recv_json("cancelled")
            got[msg["utteranceId"]] = msg["heardText"]
        await c.close()
        return got

    got = run(main())
    assert got == {"queued": "", "open": spoken_prefix(tiny_model, tokenizer, " ".join(WORDS), 1)}
