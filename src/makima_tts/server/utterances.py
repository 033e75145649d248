"""The utterances of one WebSocket session: what each one is, where it stands, and the queue they play from.

An `Utterance` is made by `speak`. Its text arrives whole or in pieces (`continue: true` keeps it `OPEN`
and makes it `incremental`): a whole text waits in `pieces` cut where it is long (`split_text`), streamed
text as it came (synthesis.py feeds it to the engine or to a segmenter), ended by `Marker.END` once the
text is `CLOSED`.
Its `stage` goes QUEUED -> PLAYING (<-> WAITING_FOR_TEXT) -> DONE (DONE: its one terminal is queued; nothing of it is sent after).

`UtteranceQueue` holds the live utterances: the queued ones in priority order (`high` and `interrupt`
before `normal`, in arrival order within each), the one playing, lookup by id, and one consumer that
takes them one at a time.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
from dataclasses import dataclass, field

from ..voices import Voice
from .segmenter import split_text
from .text_marks import TextMarks


class Stage(enum.Enum):
    QUEUED = "queued"
    PLAYING = "playing"
    WAITING_FOR_TEXT = "waiting_for_text"  # playing, all its text spoken, more may come (not busy)
    DONE = "done"  # its terminal is queued


class TextState(enum.Enum):
    OPEN = "open"  # more text may come (`continue: true`)
    CLOSED = "closed"  # the end marker is in `pieces`


class Marker(enum.Enum):
    END = "end"  # no more text
    FLUSH = "flush"  # answer `flushed` once the audio of the text before it is out


Piece = str | Marker


@dataclass(frozen=True)
class AudioFormat:
    sample_rate: int
    encoding: str  # pcm16 | pcm32f
    transport: str  # binary | base64 | none

    def ms(self, samples: int) -> float:
        return round(samples * 1000.0 / self.sample_rate, 3)


@dataclass
class UtteranceStats:
    """What one utterance produced so far (written by its synthesis, read by terminals and metrics)."""

    started_at: float | None = None  # loop time its synthesis began
    first_audio_at: float | None = None
    last_audio_at: float | None = None  # time.monotonic() of the latest frame (busy while audio is made)
    messages: int = 0  # audio messages queued
    engine_frames: int = 0
    samples: int = 0  # samples queued (or generated, with audioTransport "none")
    engine_s: float = 0.0
    truncated: bool = False

    @property
    def ttfa_s(self) -> float | None:
        if self.first_audio_at is None or self.started_at is None:
            return None
        return self.first_audio_at - self.started_at


@dataclass(eq=False)
class Utterance:
    id: str
    voice: str
    language: str | None
    format: AudioFormat
    priority: str  # normal | high | interrupt
    text: TextState
    incremental: bool = False  # its text streams in (`continue: true`)
    manifest: Voice | None = None  # the voice's manifest as read at admission (resolving reads no other)
    stage: Stage = Stage.QUEUED
    pieces: asyncio.Queue[Piece] = field(default_factory=asyncio.Queue)
    chars: int = 0
    late_flushes: int = 0  # flushes asked after the text was closed: answered before the terminal
    sent_samples: int = 0  # samples the writer has put on the socket
    stats: UtteranceStats = field(default_factory=UtteranceStats)
    marks: TextMarks = field(default_factory=TextMarks)  # its text against its audio (heard text)
    task: asyncio.Task | None = None

    def add_text(self, text: str) -> None:
        self.chars += len(text)
        self.marks.receive(text)
        for piece in [text] if self.incremental else split_text(text):
            if piece:
                self.pieces.put_nowait(piece)

    def close_text(self) -> None:
        if self.text is TextState.CLOSED:
            return
        self.text = TextState.CLOSED
        self.pieces.put_nowait(Marker.END)

    def flush_text(self) -> None:
        """`flush`: speak what has come so far; answered once that audio is out (or before the terminal)."""
        if self.text is TextState.OPEN and self.incremental:
            self.pieces.put_nowait(Marker.FLUSH)
        else:
            self.late_flushes += 1


class UtteranceQueue:
    def __init__(self) -> None:
        self.current: Utterance | None = None
        self._queued: list[Utterance] = []
        self._by_id: dict[str, Utterance] = {}
        self._changed = asyncio.Event()
        self._ids = itertools.count(1)

    def new_id(self, suffix: str) -> str:
        return f"u{next(self._ids)}-{suffix}"

    def live(self) -> list[Utterance]:
        """The playing one (until its terminal) first, then the queued ones in play order."""
        current = self.current
        return ([current] if current is not None and current.stage is not Stage.DONE else []) + list(self._queued)

    def __len__(self) -> int:
        return len(self._queued)

    def get(self, utterance_id: str) -> Utterance | None:
        return self._by_id.get(utterance_id)

    def open_text(self) -> list[Utterance]:
        return [u for u in self.live() if u.text is TextState.OPEN]

    def add(self, utt: Utterance) -> None:
        self._by_id[utt.id] = utt
        if utt.priority == "normal":
            self._queued.append(utt)
        else:  # high (and interrupt, on an emptied queue): after the other high ones
            ahead = sum(1 for _ in itertools.takewhile(lambda u: u.priority != "normal", self._queued))
            self._queued.insert(ahead, utt)
        self._changed.set()

    def remove(self, utt: Utterance) -> None:
        """Forget `utt` (its terminal is queued): no longer found by id, never played."""
        if self._by_id.get(utt.id) is utt:
            del self._by_id[utt.id]
        if utt in self._queued:
            self._queued.remove(utt)

    def wake(self) -> None:
        """Let the consumer look again (e.g. a drain with nothing queued)."""
        self._changed.set()

    async def next(self) -> Utterance | None:
        """The next utterance to play (it becomes `current`), or None when woken with nothing queued."""
        self.current = None
        if not self._queued:
            self._changed.clear()
            await self._changed.wait()
            if not self._queued:
                return None
        utt = self._queued.pop(0)
        utt.stage, self.current = Stage.PLAYING, utt
        return utt
