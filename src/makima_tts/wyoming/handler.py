"""One Wyoming connection: its events mapped onto one protocol v1 session of `SpeakClient`.

    describe                                   -> info (the server's voices and languages)
    synthesize{text, voice}                    -> speak(text)       -> audio-start, audio-chunk..., audio-stop
    synthesize-start{voice}                    -> (remember the voice)
    synthesize-chunk{text}                     -> append(text)      -> audio as soon as the server makes it
    synthesize (inside a stream)               -> ignored: Wyoming's backwards-compatible copy of the text
    synthesize-stop                            -> end()             -> ...audio-stop, synthesize-stopped
    ping                                       -> pong

The audio goes out from its own task (`_pump`), so text chunks keep being read while audio is sent. A
request out of order or malformed, and any error of the server, is answered with an `error` event carrying
the code (the connection stays usable). A client that disconnects cancels what it asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from dataclasses import dataclass

from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe
from wyoming.ping import Ping, Pong
from wyoming.server import AsyncEventHandler
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
    SynthesizeVoice,
)

from ..client import Backoff, SpeakClient, SpeakError, Utterance
from .info import build_info
from .languages import model_language

log = logging.getLogger(__name__)
SAMPLE_WIDTH = 2  # PCM16
BACKEND_BACKOFF = Backoff(attempts=3, initial_s=0.2, max_s=1.0)  # Home Assistant waits seconds, not minutes
CHANNELS = 1


@dataclass(frozen=True)
class Backend:
    """Where the speech comes from: a protocol v1 server, and the audio asked of it."""

    url: str
    token: str | None = None
    sample_rate: int = 24000

    def client(self) -> SpeakClient:
        return SpeakClient(self.url, token=self.token, sample_rate=self.sample_rate, backoff=BACKEND_BACKOFF)


class Request(enum.Enum):
    IDLE = "idle"
    STREAMING = "streaming"  # between synthesize-start and synthesize-stop
    FAILED = "failed"  # a stream whose utterance ended in an error: its remaining text is dropped


class BadEvent(Exception):
    """An event that cannot be handled now or as it is: answered with an `error` event."""


class SynthesisHandler(AsyncEventHandler):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, backend: Backend):
        super().__init__(reader, writer)
        self.backend = backend
        self.request = Request.IDLE
        self._tts: SpeakClient | None = None
        self._stream_voice: SynthesizeVoice | None = None
        self._pump_task: asyncio.Task[None] | None = None
        self._stream_stopped = asyncio.Event()  # synthesize-stop came: synthesize-stopped may follow the audio

    async def handle_event(self, event: Event) -> bool:
        try:
            await self._handle(event)
        except BadEvent as exc:
            await self.write_event(Error(text=str(exc), code="BAD_EVENT").event())
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # the wyoming package's parsing
            await self.write_event(Error(text=f"malformed {event.type} event: {exc!r}", code="BAD_EVENT").event())
        except SpeakError as exc:
            await self.write_event(Error(text=exc.message, code=exc.code_name).event())
        return True

    async def _handle(self, event: Event) -> None:
        if Describe.is_type(event.type):
            tts = await self._client()
            await self.write_event(build_info(await tts.voices.list(), tts.ready.capabilities.languages).event())
        elif Ping.is_type(event.type):
            await self.write_event(Pong(text=event.data.get("text")).event())
        elif SynthesizeStart.is_type(event.type):
            self._require(Request.IDLE, "synthesize-start while a stream is open; send synthesize-stop first")
            self._idle_or_fail()
            self._stream_voice = SynthesizeStart.from_event(event).voice
            self._stream_stopped.clear()
            self.request = Request.STREAMING
        elif SynthesizeChunk.is_type(event.type):
            self._require(Request.STREAMING, "synthesize-chunk outside a stream; send synthesize-start first")
            text = _text(event, "synthesize-chunk")
            if text and self.request is Request.STREAMING:
                tts = await self._client()
                utt = tts.append(text, **self._voice_options(self._stream_voice))
                if self._pump_task is None:
                    self._pump_task = asyncio.create_task(self._pump(utt, Request.STREAMING))
        elif SynthesizeStop.is_type(event.type):
            self._require(Request.STREAMING, "synthesize-stop without synthesize-start")
            streamed, self.request = self.request is Request.STREAMING and self._pump_task is not None, Request.IDLE
            self._stream_stopped.set()
            if streamed:
                self._tts.end()  # the pump sends audio-stop, then synthesize-stopped
            elif self._pump_task is None:  # no text came, or it failed: nothing more to say
                await self.write_event(SynthesizeStopped().event())
        elif Synthesize.is_type(event.type):
            if self.request is Request.STREAMING:
                return  # the stream's text again, for servers without streaming
            text = _text(event, "synthesize")
            if not text.strip():
                raise BadEvent("synthesize needs a non-empty text")
            self._idle_or_fail()
            tts = await self._client()
            utt = tts.speak(text, **self._voice_options(Synthesize.from_event(event).voice))
            self._pump_task = asyncio.create_task(self._pump(utt, Request.IDLE))
        else:
            log.debug("ignoring a %r event (not a TTS request)", event.type)

    def _require(self, state: Request, message: str) -> None:
        now = Request.STREAMING if self.request is Request.FAILED else self.request
        if now is not state:
            raise BadEvent(message)

    def _idle_or_fail(self) -> None:
        if self._pump_task is not None:
            raise BadEvent("a synthesis is still sending its audio; wait for its audio-stop")

    async def _client(self) -> SpeakClient:
        if self._tts is None:
            tts = self.backend.client()
            await tts.connect()
            self._tts = tts
        return self._tts

    @staticmethod
    def _voice_options(voice: SynthesizeVoice | None) -> dict[str, str]:
        if voice is None:
            return {}
        if voice.name:
            return {"voice": voice.name}
        language = model_language(voice.language)
        return {"language": language} if language else {}

    async def _pump(self, utt: Utterance, kind: Request) -> None:
        """Send the utterance's audio as it comes; audio-stop after its last frame."""
        rate = utt.sample_rate
        fmt = {"rate": rate, "width": SAMPLE_WIDTH, "channels": CHANNELS}
        samples = 0
        try:
            async for chunk in utt:
                if samples == 0:
                    await self.write_event(AudioStart(timestamp=0, **fmt).event())
                await self.write_event(AudioChunk(audio=chunk, timestamp=samples * 1000 // rate, **fmt).event())
                samples += len(chunk) // SAMPLE_WIDTH
            if samples == 0:
                await self.write_event(AudioStart(timestamp=0, **fmt).event())
            await self.write_event(AudioStop(timestamp=samples * 1000 // rate).event())
        except SpeakError as exc:
            if self.request is Request.STREAMING:
                self.request = Request.FAILED
            await self.write_event(Error(text=exc.message, code=exc.code_name).event())
        finally:
            self._pump_task = None
        if kind is Request.STREAMING and self._stream_stopped.is_set():
            await self.write_event(SynthesizeStopped().event())
        # else: the stream failed before its synthesize-stop, which will answer it

    async def disconnect(self) -> None:
        """The Wyoming client left: cancel its synthesis (the server stops generating) and end the session."""
        if self._pump_task is not None:
            self._pump_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump_task
        if self._tts is not None:
            await self._tts.close()


def _text(event: Event, kind: str) -> str:
    text = event.data.get("text")
    if not isinstance(text, str):
        raise BadEvent(f"{kind} needs a string 'text'")
    return text
