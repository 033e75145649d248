"""Talk to a Wyoming TTS server the way Home Assistant does and print every event: `describe`, then one
streaming synthesis whose text goes in three pieces (the last one only after audio has started).

    python examples/wyoming_probe.py --uri tcp://127.0.0.1:10200 [--voice default]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from wyoming.client import AsyncClient
from wyoming.info import Describe
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop, SynthesizeVoice

PIECES = ["Good evening. The lights in the living room ", "are now off. ", "Sleep well."]


def show(direction: str, event, t0: float) -> None:
    data = json.dumps(event.data, ensure_ascii=False)
    payload = f" +{len(event.payload)} bytes" if event.payload else ""
    print(f"{(time.monotonic() - t0) * 1000:8.1f} ms {direction} {event.type} {data}{payload}")


async def main(uri: str, voice: str | None) -> None:
    t0 = time.monotonic()
    chunks = 0
    async with AsyncClient.from_uri(uri, read_timeout=60) as client:
        async def send(event) -> None:
            show("->", event, t0)
            await client.write_event(event)

        async def until(*types: str):
            nonlocal chunks
            while True:
                event = await client.read_event()
                if event is None:
                    raise SystemExit("the server closed the connection")
                if event.type != "audio-chunk" or not chunks:
                    show("<-", event, t0)
                chunks += event.type == "audio-chunk"
                if event.type in types:
                    return event

        await send(Describe().event())
        await until("info")
        await send(SynthesizeStart(voice=SynthesizeVoice(name=voice) if voice else None).event())
        await send(SynthesizeChunk(text=PIECES[0]).event())
        await send(SynthesizeChunk(text=PIECES[1]).event())
        await until("audio-chunk")
        print(f"{'':11} (first audio came before the last text chunk was sent; later audio-chunks not shown)")
        await send(SynthesizeChunk(text=PIECES[2]).event())
        await send(Synthesize(text="".join(PIECES)).event())  # Wyoming's backwards-compatible copy
        await send(SynthesizeStop().event())
        await until("synthesize-stopped")
        print(f"{'':11} {chunks} audio-chunk events in all")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri", default="tcp://127.0.0.1:10200")
    parser.add_argument("--voice", default=None)
    args = parser.parse_args()
    asyncio.run(main(args.uri, args.voice))
