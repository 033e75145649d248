"""`makima-tts speak --url ws://HOST:PORT TEXT [-o out.wav] [--play]`: speak through a running server with
`SpeakClient`, writing each 80 ms frame to the WAV file (PCM16) and/or the audio device as it arrives."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from .errors import SpeakError
from .playback import PlaybackUnavailable, open_output

TOKEN_ENV = "MAKIMA_TTS_TOKEN"  # nosec B105: the name of the variable that holds the token, not a token


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("text")
    p.add_argument("--url", required=True, help="the server: ws://HOST:PORT[/api/v1/speak] or http://HOST:PORT")
    p.add_argument("--token", default=os.environ.get(TOKEN_ENV), help=f"access token (default: ${TOKEN_ENV})")
    p.add_argument("--voice", default=None, help="voice id (default: the server's)")
    p.add_argument("--language", default=None)
    p.add_argument("--sample-rate", type=int, default=24000)
    p.add_argument("-o", "--output", default=None, help="write a PCM16 WAV file")
    p.add_argument("--play", action="store_true", help="play on the default audio output (needs sounddevice)")


def run(args: argparse.Namespace) -> int:
    if not args.output and not args.play:
        print("error: say where the audio goes: -o FILE.wav and/or --play", file=sys.stderr)
        return 2
    try:
        output = open_output(args.sample_rate, "pcm16") if args.play else None
    except PlaybackUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        complete = asyncio.run(_speak(args, output))
    except (SpeakError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if output is not None:
            output.stop()
            output.close()
    note = " (truncated at the frame budget)" if complete.truncated else ""
    print(f"{complete.frames} frames, {complete.audioLengthMs / 1000:.2f} s of audio{note}; server time to first "
          f"audio {complete.ttfaMs} ms" + (f"; wrote {args.output}" if args.output else ""), file=sys.stderr)
    return 0


async def _speak(args: argparse.Namespace, output):
    import soundfile

    from .session import SpeakClient

    async with SpeakClient(args.url, token=args.token, voice=args.voice, language=args.language,
                           sample_rate=args.sample_rate) as tts:
        wav = soundfile.SoundFile(args.output, "w", samplerate=tts.sample_rate, channels=1, subtype="PCM_16",
                                  format="WAV") if args.output else None
        try:
            speech = tts.speak(args.text)
            async for chunk in speech:
                if wav is not None:
                    wav.buffer_write(chunk, dtype="int16")
                    wav.flush()
                if output is not None:
                    await asyncio.to_thread(output.write, chunk)
            return await speech.wait()
        finally:
            if wav is not None:
                wav.close()
