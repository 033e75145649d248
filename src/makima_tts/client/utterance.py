"""One utterance as the client sees it: its audio as it arrives, then exactly one terminal.

The session's reader task feeds it (`_audio`, `_finish`); the program reads it:

    async for chunk in utterance:   # raw little-endian PCM, one 80 ms frame per chunk
        ...
    utterance.complete              # the server's `complete` stats (None if it was cancelled)

Iteration ends after the last chunk; it raises `SpeakError` when the utterance ended in an `error`.
Audio is buffered without bound until read, so a slow reader never stalls the session's control messages.
`heard_text(played_ms)` is the text the listener heard (the server's rule: server/text_marks.py).
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator

from ..server.protocol import Cancelled, Complete
from .errors import SpeakError


def heard_from_marks(marks: list[tuple[float, str]], played_ms: float) -> str:
    """`complete.textMarks` at a playback position: the texts of the marks before `played_ms`, joined."""
    return "".join(text for ms, text in marks if ms < played_ms)


class TextInput(enum.Enum):
    WHOLE = "whole"  # one `speak` carried all of its text
    OPEN = "open"  # streamed text (`append`): more may come
    CLOSED = "closed"  # `end` was sent


class _End(enum.Enum):
    END = "end"  # the terminal came: no more audio


class Utterance:
    def __init__(self, utterance_id: str, text: TextInput, sample_rate: int, encoding: str):
        self.id, self.text, self.sample_rate, self.encoding = utterance_id, text, sample_rate, encoding
        self.complete: Complete | None = None
        self.cancelled: Cancelled | None = None
        self.error: SpeakError | None = None
        self._chunks: asyncio.Queue[bytes | _End] = asyncio.Queue()
        self._done = asyncio.Event()
        self._muted = False  # interrupted: its audio is no longer wanted

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def terminal(self) -> Complete | Cancelled | SpeakError | None:
        return self.complete or self.cancelled or self.error

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        while True:
            chunk = await self._chunks.get()
            if chunk is _End.END:
                self._chunks.put_nowait(_End.END)  # a second iteration ends at once too
                if self.error is not None:
                    raise self.error
                return
            yield chunk

    def heard_text(self, played_ms: float | None = None) -> str:
        """The text heard once `played_ms` of its audio had played (None: all of it): the server's
        `heardText` if it was cancelled (from the `playedMs` sent with the cancel), else from its
        `textMarks`; "" before its terminal or after an error."""
        if self.cancelled is not None:
            return self.cancelled.heardText
        if self.complete is not None:
            return heard_from_marks(self.complete.textMarks, float("inf") if played_ms is None else played_ms)
        return ""

    async def wait(self) -> Complete | Cancelled:
        """Wait for the terminal (audio not read stays buffered); raises the utterance's `SpeakError`."""
        await self._done.wait()
        if self.error is not None:
            raise self.error
        return self.complete or self.cancelled  # type: ignore[return-value]

    async def read_all(self) -> tuple[bytes, Complete | Cancelled]:
        """All of its audio, joined, and its terminal."""
        audio = b"".join([chunk async for chunk in self])
        return audio, await self.wait()

    # --- fed by the session -------------------------------------------------------------------------

    def _audio(self, chunk: bytes) -> None:
        if not self.done and not self._muted:
            self._chunks.put_nowait(chunk)

    def _mute(self) -> None:
        """Drop the audio not read yet and any that still comes (its terminal is on the way)."""
        self._muted = True
        while not self._chunks.empty():
            self._chunks.get_nowait()

    def _finish(self, terminal: Complete | Cancelled | SpeakError) -> None:
        """Its one terminal (later ones are ignored)."""
        if self.done:
            return
        if isinstance(terminal, Complete):
            self.complete = terminal
        elif isinstance(terminal, Cancelled):
            self.cancelled = terminal
        else:
            self.error = terminal
        self.text = TextInput.CLOSED if self.text is TextInput.OPEN else self.text
        self._chunks.put_nowait(_End.END)
        self._done.set()
