"""One utterance of a WebSocket session, from its text pieces to audio messages in the outbox.

    utt.pieces (text) -> one engine job per piece (engine.stream) -> AudioFrame (24 kHz float32, 80 ms)
        -> PcmStream (the client's rate and encoding) -> one audio message per frame -> outbox

`Synthesis.run()` returns the utterance's `complete` message; a failure raises `SynthesisFailed` with
the protocol's error code. Binary audio leaves the moment its frame arrives, `speaking` before the
first. The last frame of each engine job carries the resampler's tail, so a resampled stream also has
exactly one message per frame. base64 holds the latest chunk until the next one (or the end) is known,
so that the last one is marked `isFinal`. A `flush` marker is answered once the audio before it is
queued; flushes that came after the text was closed are answered before `complete`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Callable

import numpy as np

from ..audio import PcmStream
from ..engine.stream import stream_events
from ..engine.types import AudioFrame
from ..voices import VoiceError
from . import protocol as p
from .model_manager import ModelUnavailable
from .outbox import Outgoing
from .services import Services
from .speech_requests import resolve_voicing, voice_error_code
from .utterances import Marker, Piece, Stage, Utterance


class SynthesisFailed(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class Synthesis:
    def __init__(self, utt: Utterance, services: Services, send: Callable[[Outgoing], None]):
        self.utt, self.services, self.send = utt, services, send
        self.pcm: PcmStream | None = None  # made once the model (and so its sample rate) is known
        self._held: tuple[bytes, int] | None = None  # base64: (PCM, samples) of the latest chunk

    async def run(self) -> p.Complete:
        utt, stats, loop = self.utt, self.utt.stats, asyncio.get_running_loop()
        stats.started_at = loop.time()
        try:
            tts, engine = await self.services.models.wait_loaded()
            voicing = await resolve_voicing(self.services, tts, utt.voice, utt.language, utt.manifest)
        except ModelUnavailable as exc:
            raise SynthesisFailed("SYNTHESIS_ERROR", str(exc)) from None
        except VoiceError as exc:
            raise SynthesisFailed(voice_error_code(exc), exc.message) from None
        self.pcm = PcmStream(tts.sample_rate, utt.format.sample_rate, utt.format.encoding)
        while (piece := await self._next_piece()) is not Marker.END:
            if piece is Marker.FLUSH:
                self._release_held(final=False)
                self._flushed()
                continue
            began = loop.time()
            request = voicing.request(piece)
            async with contextlib.aclosing(stream_events(engine, request)) as events:
                async for event in events:
                    if isinstance(event, AudioFrame):
                        self._frame(event)
                    elif event.error is not None:
                        raise SynthesisFailed("SYNTHESIS_ERROR", event.error)
                    else:
                        stats.truncated |= event.truncated
            stats.engine_s += loop.time() - began
        self._release_held(final=True)
        for _ in range(utt.late_flushes):
            self._flushed()
        first = stats.first_audio_at
        return p.Complete(
            utteranceId=utt.id,
            durationMs=round((loop.time() - stats.started_at) * 1000, 1),
            charactersProcessed=utt.chars,
            audioLengthMs=utt.format.ms(stats.samples),
            frames=stats.engine_frames if utt.format.transport == "none" else stats.messages,
            ttfaMs=round((first - stats.started_at) * 1000, 1) if first is not None else None,
            truncated=stats.truncated,
        )

    async def _next_piece(self) -> Piece:
        """The next piece; while it waits for the client's text the utterance is not busy (idle clock)."""
        utt = self.utt
        if not utt.pieces.empty():
            return utt.pieces.get_nowait()
        utt.stage = Stage.WAITING_FOR_TEXT
        try:
            return await utt.pieces.get()
        finally:
            if utt.stage is Stage.WAITING_FOR_TEXT:
                utt.stage = Stage.PLAYING

    def _frame(self, frame: AudioFrame) -> None:
        utt, stats = self.utt, self.utt.stats
        stats.engine_frames += 1
        samples = self.pcm.convert(frame.audio)
        if frame.last:  # the job's final frame: the resampler's tail goes with it
            samples = np.concatenate((samples, self.pcm.finish()))
        if stats.first_audio_at is None:
            stats.first_audio_at = asyncio.get_running_loop().time()
            speaking = p.Speaking(utteranceId=utt.id, sampleRate=utt.format.sample_rate, encoding=utt.format.encoding)
            self.send(Outgoing(p.dump(speaking), utt))
        n = int(samples.shape[0])
        transport = utt.format.transport
        if transport == "none":
            stats.samples += n
        elif transport == "binary":
            self._queue_audio(self.pcm.encode(samples), n)
        else:
            self._release_held(final=False)
            self._held = (self.pcm.encode(samples), n)

    def _release_held(self, final: bool) -> None:
        """base64: send the held chunk (marked final when nothing follows it)."""
        if self._held is None:
            return
        (data, n), self._held = self._held, None
        stats = self.utt.stats
        chunk = p.AudioChunk(
            utteranceId=self.utt.id,
            data=base64.b64encode(data).decode("ascii"),
            sequenceNumber=stats.messages,
            isFinal=final,
            timestampMs=self.utt.format.ms(stats.samples),
        )
        self._queue_audio(p.dump(chunk), n)

    def _queue_audio(self, data: bytes | dict, samples: int) -> None:
        stats = self.utt.stats
        stats.messages += 1
        stats.samples += samples
        self.send(Outgoing(data, self.utt, samples))

    def _flushed(self) -> None:
        utt = self.utt
        self.send(Outgoing(p.dump(p.Flushed(utteranceId=utt.id, audioMs=utt.format.ms(utt.stats.samples))), utt))
