"""utterances.py: the queue's play order (high before normal, arrival order within each), lookup by id,
one consumer, and an utterance's text pieces (whole, streamed, flushed, closed)."""

from __future__ import annotations

import asyncio

from makima_tts.server.utterances import AudioFormat, Marker, Stage, TextState, Utterance, UtteranceQueue


def utterance(uid: str, priority: str = "normal", streamed: bool = False) -> Utterance:
    return Utterance(id=uid, voice="default", language=None, format=AudioFormat(16000, "pcm16", "binary"),
                     priority=priority, text=TextState.OPEN, incremental=streamed)


def drain(utt: Utterance) -> list:
    out = []
    while not utt.pieces.empty():
        out.append(utt.pieces.get_nowait())
    return out


def test_priority_order_lookup_and_one_consumer():
    async def main():
        queue = UtteranceQueue()
        for utt in (utterance("n1"), utterance("h1", "high"), utterance("n2"), utterance("h2", "high")):
            queue.add(utt)
        assert [u.id for u in queue.live()] == ["h1", "h2", "n1", "n2"] and len(queue) == 4
        first = await queue.next()
        assert first.id == "h1" and first.stage is Stage.PLAYING and queue.current is first
        assert queue.get("n2").id == "n2" and queue.get("nope") is None
        n1 = queue.get("n1")
        queue.remove(n1)  # its terminal is queued: never played, no longer found
        assert queue.get("n1") is None
        first.stage = Stage.DONE
        assert [u.id for u in queue.live()] == ["h2", "n2"]  # a finished current is not live
        assert [(await queue.next()).id, (await queue.next()).id] == ["h2", "n2"]
        waiting = asyncio.create_task(queue.next())
        await asyncio.sleep(0)
        queue.wake()  # woken with nothing queued
        assert await asyncio.wait_for(waiting, 10) is None

    asyncio.run(main())


def test_whole_text_then_end():
    utt = utterance("w")
    utt.add_text("Hello there.")
    utt.close_text()
    assert drain(utt) == ["Hello there.", Marker.END] and utt.text is TextState.CLOSED
    utt.close_text()  # once only
    assert drain(utt) == []


def test_streamed_text_flush_and_late_flush():
    utt = utterance("s", streamed=True)
    utt.add_text("The weather in ")
    utt.add_text("")  # nothing to speak: no piece
    assert drain(utt) == ["The weather in "]  # as it came (synthesis streams or segments it)
    utt.flush_text()
    assert drain(utt) == [Marker.FLUSH]
    utt.add_text("Paris is sunny today. And ")
    utt.close_text()
    assert drain(utt) == ["Paris is sunny today. And ", Marker.END]
    utt.flush_text()  # after the text closed: answered before the terminal
    assert utt.late_flushes == 1 and drain(utt) == []
    assert utt.chars == len("The weather in ") + len("Paris is sunny today. And ")
