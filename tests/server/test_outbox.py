"""outbox.py: one writer in order, the bound (slow consumer), dropping a cancelled utterance's queued audio,
nothing of an utterance after its terminal, and the samples counted as sent (the frame being written too)."""

from __future__ import annotations

import asyncio

from makima_tts.server.outbox import Outbox, Outgoing
from makima_tts.server.utterances import AudioFormat, Stage, TextState, Utterance


class Socket:
    """Records what is sent; `gate` holds each send until the test lets it through."""

    def __init__(self, gated: bool = False):
        self.sent: list = []
        self.gate = asyncio.Semaphore(0) if gated else None
        self.sending = asyncio.Event()
        self.closed = False

    async def _send(self, data) -> None:
        self.sending.set()
        if self.gate is not None:
            await self.gate.acquire()
        if self.closed:
            raise ConnectionError("gone")
        self.sent.append(data)

    async def send_bytes(self, data: bytes) -> None:
        await self._send(data)

    async def send_text(self, data: str) -> None:
        await self._send(data)


def utterance(uid: str) -> Utterance:
    return Utterance(id=uid, voice="default", language=None, format=AudioFormat(24000, "pcm16", "binary"),
                     priority="normal", text=TextState.OPEN)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_in_order_and_counted():
    async def main():
        ws, gone = Socket(), []
        outbox = Outbox(ws, limit=8, on_gone=lambda: gone.append(True))
        u = utterance("a")
        writer = asyncio.create_task(outbox.run())
        assert outbox.put(Outgoing({"type": "speaking"}, u))
        assert outbox.put(Outgoing(b"\x00\x01" * 10, u, samples=10))
        assert outbox.put(Outgoing({"type": "complete"}))
        await outbox.drained(timeout=10)
        writer.cancel()
        assert ws.sent == ['{"type":"speaking"}', b"\x00\x01" * 10, '{"type":"complete"}']
        assert u.sent_samples == 10 and outbox.sent_samples(u) == 10 and not gone

    run(main())


def test_full_outbox_refuses_unless_forced():
    outbox = Outbox(Socket(), limit=2, on_gone=lambda: None)
    assert outbox.put(Outgoing(b"1")) and outbox.put(Outgoing(b"2"))
    assert not outbox.put(Outgoing(b"3"))  # the client is not reading
    assert outbox.put(Outgoing({"type": "stopped"}), force=True)


def test_cancel_drops_queued_audio_and_counts_the_frame_in_flight():
    async def main():
        ws = Socket(gated=True)
        outbox = Outbox(ws, limit=16, on_gone=lambda: None)
        a, b = utterance("a"), utterance("b")
        writer = asyncio.create_task(outbox.run())
        for k in range(4):
            outbox.put(Outgoing(bytes([k]) * 4, a, samples=2))
        outbox.put(Outgoing(b"other", b, samples=5))
        await ws.sending.wait()  # the first frame of `a` is being written
        outbox.drop(a)
        assert outbox.sent_samples(a) == 2  # it will be on the socket before anything queued now
        a.stage = Stage.DONE
        assert outbox.put(Outgoing(b"late", a, samples=2))  # accepted and ignored: `a` has its terminal
        outbox.put(Outgoing({"type": "cancelled"}))
        for _ in range(3):
            ws.gate.release()
        await outbox.drained(timeout=10)
        writer.cancel()
        assert ws.sent == [b"\x00" * 4, b"other", '{"type":"cancelled"}']
        assert a.sent_samples == 2 and b.sent_samples == 5

    run(main())


def test_a_client_gone_stops_the_writer():
    async def main():
        ws, gone = Socket(), []
        ws.closed = True
        outbox = Outbox(ws, limit=4, on_gone=lambda: gone.append(True))
        outbox.put(Outgoing(b"x"))
        await asyncio.wait_for(outbox.run(), 10)  # returns instead of raising
        assert gone == [True]

    run(main())
