"""How far into its text an utterance's audio had got: `cancelled.heardText` and `complete.textMarks`.

The rule. The talker takes in text one token per generated frame (qwen3-tts-reference.md sections 5-6):
the prefill holds the first token(s) and frame k comes after k more. The engine reports with each frame
how many of its text tokens had been taken in when it was made (`AudioFrame.text_read`). The audio of the
frames played cannot say anything the talker had not read, so

    heard text = the utterance's text up to the end of the tokens read by the last frame played

(a frame counts as played once any of it has played). It errs towards more text, never less: speech
lags the text the talker has read (a real voice reads ~12 tokens a second and speaks ~4), and a
character split over several tokens counts from its first. Where a layout reads the whole text up front
(non-streaming text: CustomVoice, VoiceDesign; an ICL clone whose reference covers the text), the bound
is each engine job's whole text: whole sentences, since long texts and the segmenter's streamed text are
one job per sentence. Jobs before the one playing count whole.

`complete.textMarks` gives the same rule to a client whose playback outlives the server's work (the
common case: generation runs faster than real time): pairs [ms, text] meaning that audio from `ms` on
had read `text` as well, so the heard text at `playedMs` is the join of the texts of the marks before it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..text import TextTokenizer


@dataclass
class _JobText:
    start: int  # where the job's text begins in the utterance's text
    text: str


@dataclass
class _Frame:
    start: int  # first sample (at the client's rate) of the frame's audio within the utterance
    job: int
    text_read: int


@dataclass
class TextMarks:
    """One utterance's ledger: its text as received, its engine jobs' texts and its frames."""

    received: str = ""
    tokenizer: TextTokenizer | None = None  # set with the first job
    _jobs: list[_JobText] = field(default_factory=list)
    _frames: list[_Frame] = field(default_factory=list)
    _samples: int = 0

    def receive(self, text: str) -> None:
        self.received += text

    def job(self, text: str, tokenizer: TextTokenizer) -> None:
        """A new engine job that speaks `text` (a piece of the received text, perhaps stripped)."""
        self.tokenizer = tokenizer
        cursor = self._jobs[-1].start + len(self._jobs[-1].text) if self._jobs else 0
        found = self.received.find(text, cursor)
        self._jobs.append(_JobText(found if found >= 0 else cursor, text))

    def extend(self, text: str) -> None:
        """More text for the running (open-text) job."""
        self._jobs[-1].text += text

    def frame(self, samples: int, text_read: int) -> None:
        """The running job's next frame: `samples` of audio at the client's rate."""
        self._frames.append(_Frame(self._samples, len(self._jobs) - 1, text_read))
        self._samples += samples

    def heard(self, played_samples: int) -> str:
        """The text heard once `played_samples` of the utterance's audio have played."""
        reached, ends = 0, {}
        for frame in self._frames:
            if frame.start >= played_samples:
                break
            reached = max(reached, self._reach(frame, ends))
        return self.received[:reached]

    def marks(self, sample_rate: int) -> list[tuple[float, str]]:
        """[ms, text] wherever the text read grows: `text` was read from `ms` of audio on."""
        reached, ends, out = 0, {}, []
        for frame in self._frames:
            if (now := self._reach(frame, ends)) > reached:
                out.append((round(frame.start * 1000.0 / sample_rate, 3), self.received[reached:now]))
                reached = now
        return out

    def _reach(self, frame: _Frame, ends: dict[int, list[int]]) -> int:
        """Characters of the received text read by `frame` (`ends`: each job's token ends, computed once)."""
        job = self._jobs[frame.job]
        if frame.job not in ends:
            ends[frame.job] = self.tokenizer.text_ends(job.text) if self.tokenizer is not None else []
        token_ends = ends[frame.job]
        within = token_ends[min(frame.text_read, len(token_ends)) - 1] if frame.text_read and token_ends else 0
        return job.start + within
