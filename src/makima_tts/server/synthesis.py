"""One utterance of a WebSocket session, from its text pieces to audio messages in the outbox.

    utt.pieces (text) -> engine jobs (engine.stream) -> AudioFrame (24 kHz float32, 80 ms)
        -> PcmStream (the client's rate and encoding) -> one audio message per frame -> outbox

Engine jobs: a whole text is one job per piece (long texts come cut into sentences). Streamed text
(`continue: true`) is one open-text job that takes each piece as it comes (`Job.append_text`), so
speech starts with the first stable token, when the voice's text layout allows it and the server is set
to (`text_input` "stream"; `streams_text`); a `flush` or the end closes that job's text (its audio ends
as that of the whole text would), and text after a flush opens the next one. Otherwise (`segment`, or a
non-streaming layout) a `TextSegmenter` cuts the streamed text into sentences, one job each. An open
text left `text_open_timeout_s` without more text is closed, with a notice (`TEXT_TIMEOUT`).

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
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import numpy as np

from ..audio import PcmStream
from ..engine.prompt import prefill_text_tokens
from ..engine.stream import start_stream, stream_events
from ..engine.types import AudioFrame, EngineEvent
from ..voices import VoiceError
from . import protocol as p
from .model_manager import ModelUnavailable
from .outbox import Outgoing
from .segmenter import TextSegmenter
from .services import Services
from .speech_requests import Voicing, resolve_voicing, voice_error_code
from .utterances import Marker, Piece, Stage, TextState, Utterance


def streams_text(services: Services, tts, voicing: Voicing) -> bool:
    """Whether streamed text for this voice feeds one engine job as it arrives (else: the segmenter)."""
    if services.settings.text_input != "stream":
        return False
    return prefill_text_tokens(voicing.request("x"), tts.config, tts.tokenizer) is not None


class SynthesisFailed(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class Synthesis:
    def __init__(self, utt: Utterance, services: Services, send: Callable[[Outgoing], None]):
        self.utt, self.services, self.send = utt, services, send
        self.tts = None  # the loaded model
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
        self.tts = tts
        self.pcm = PcmStream(tts.sample_rate, utt.format.sample_rate, utt.format.encoding)
        if utt.incremental and streams_text(self.services, tts, voicing):
            await self._streamed(engine, voicing)
        else:
            await self._in_pieces(engine, voicing)
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
            textMarks=utt.marks.marks(utt.format.sample_rate),
        )

    async def _in_pieces(self, engine, voicing: Voicing) -> None:
        """One engine job per piece: a whole text's pieces, or sentences the segmenter cuts."""
        segmenter = TextSegmenter() if self.utt.incremental else None
        while (piece := await self._next_piece()) is not Marker.END:
            if piece is Marker.FLUSH:
                for text in segmenter.flush() if segmenter is not None else ():
                    await self._speak_whole(engine, voicing, text)
                self._release_held(final=False)
                self._flushed()
                continue
            for text in segmenter.feed(piece) if segmenter is not None else [piece]:
                await self._speak_whole(engine, voicing, text)
        for text in segmenter.flush() if segmenter is not None else ():
            await self._speak_whole(engine, voicing, text)

    async def _speak_whole(self, engine, voicing: Voicing, text: str) -> None:
        self.utt.marks.job(text, self.tts.tokenizer)
        await self._speak(stream_events(engine, voicing.request(text)))

    async def _streamed(self, engine, voicing: Voicing) -> None:
        """Streamed text as open-text engine jobs: each piece goes to the running job as it comes."""
        job, speaking, piece = None, None, None
        try:
            while True:
                piece = piece or asyncio.ensure_future(self._next_piece())
                await asyncio.wait({piece, speaking} - {None}, return_when=asyncio.FIRST_COMPLETED)
                if speaking is not None and speaking.done():  # ended early (end token, budget) or failed
                    job, speaking = None, speaking.result()
                if not piece.done():
                    continue
                text, piece = piece.result(), None
                if isinstance(text, str):
                    if speaking is None:
                        job, events = start_stream(engine, replace(voicing.request(text), text_open=True))
                        self.utt.marks.job(text, self.tts.tokenizer)
                        speaking = asyncio.ensure_future(self._speak(events))
                    else:
                        job.append_text(text)
                        self.utt.marks.extend(text)
                    continue
                if speaking is not None:  # flush or end: the job's text closes, its audio plays out
                    job.append_text("", close=True)
                    job, speaking = None, await speaking
                if text is Marker.END:
                    return
                self._release_held(final=False)
                self._flushed()
        finally:
            for task in (piece, speaking):
                if task is not None:
                    task.cancel()

    async def _speak(self, events: AsyncIterator[EngineEvent]) -> None:
        """Play one engine job's frames as they come; None once its Finished is in."""
        stats, loop = self.utt.stats, asyncio.get_running_loop()
        began = loop.time()
        try:
            async with contextlib.aclosing(events):
                async for event in events:
                    if isinstance(event, AudioFrame):
                        self._frame(event)
                    elif event.error is not None:
                        raise SynthesisFailed("SYNTHESIS_ERROR", event.error)
                    else:
                        stats.truncated |= event.truncated
        finally:
            stats.engine_s += loop.time() - began

    async def _next_piece(self) -> Piece:
        """The next piece; while it waits for the client's text the utterance is not busy (idle clock).
        An open text that gets nothing new for `text_open_timeout_s` is closed here."""
        utt = self.utt
        if not utt.pieces.empty():
            return utt.pieces.get_nowait()
        utt.stage = Stage.WAITING_FOR_TEXT
        timeout = self.services.settings.text_open_timeout_s
        try:
            try:
                return await asyncio.wait_for(utt.pieces.get(), timeout if utt.text is TextState.OPEN else None)
            except TimeoutError:
                utt.close_text()
                message = (f"the text of utterance {utt.id!r} got nothing new for {timeout:g} s, so it was "
                           "closed; end streamed text with continue:false")
                self.send(Outgoing(p.error_message("TEXT_TIMEOUT", message), utt))
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
        stats.last_audio_at = time.monotonic()
        if stats.first_audio_at is None:
            stats.first_audio_at = asyncio.get_running_loop().time()
            speaking = p.Speaking(utteranceId=utt.id, sampleRate=utt.format.sample_rate, encoding=utt.format.encoding)
            self.send(Outgoing(p.dump(speaking), utt))
        n = int(samples.shape[0])
        utt.marks.frame(n, frame.text_read)
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
