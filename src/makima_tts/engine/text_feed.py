"""The trailing text of one utterance: text tokens that become one talker text row per generated frame.

After the prefill the talker adds one text row to each step (qwen3-tts-reference.md section 6): step k
takes row k of the trailing text, and `P` (tts_pad) once it is used up. In the streaming-text layout the
trailing text is the tokens after those in the prefill, then `E` (tts_eos); in the other layouts it is
empty (so `P` from step 0; `E` already sits in the prefill).

A `TextFeed` may be *open*: its text is still arriving (`extend`), and `E` is only known to come next
once it is `close`d. Step k of an open feed whose k-th row has not arrived cannot run: the slot waits
(`ready(k)` is False) and resumes when more text comes or the text closes; so an utterance whose text
trickles in makes exactly the rows, and so the codes, of the same text given whole.

`read_by(step)` counts the utterance's own text tokens the talker has taken in once it makes frame
`step` (the prefill's, then rows [0, step) of the feed): frame 0 comes from the prefill, frame k after k
feed rows (reference section 6). The server turns it into the text heard up to a point of the audio.

Rows are embedded one token at a time, when their step is staged (`row`): the text projection of a batch
of rows differs from that of single rows in the last bits, and one token at a time is the same however
the text was split. Used only from the engine's generation thread.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


class TextFeed:
    def __init__(self, embed: Callable[[int], torch.Tensor], ids: list[int], eos: torch.Tensor | None,
                 pad: torch.Tensor, open_text: bool = False, *, read_before: int = 0, foreign: int = 0):
        """`embed`: token id -> its text row [H]; `ids`: the trailing tokens known so far; `eos`: the row
        after the last token (streaming layout) or None; `pad`: every row after that. `read_before`: the
        utterance's text tokens already in the prefill; `foreign`: leading `ids` that are not (an ICL
        reference transcript longer than the prefill's rows)."""
        self._embed, self.ids, self.eos, self.pad = embed, list(ids), eos, pad
        self.open = open_text
        self.read_before, self.foreign = read_before, foreign

    def extend(self, ids: list[int]) -> None:
        if not self.open:
            raise ValueError("the text of this utterance is closed")
        self.ids.extend(ids)

    def close(self) -> None:
        self.open = False

    @property
    def tokens(self) -> int:
        return len(self.ids)

    def read_by(self, step: int) -> int:
        """The utterance's text tokens taken in when frame `step` is made (0-based, as `ready`)."""
        return self.read_before + max(0, min(step, len(self.ids)) - self.foreign)

    def ready(self, step: int) -> bool:
        """Whether step `step` (0-based, after the prefill) has its text row (False: wait for text)."""
        return step < len(self.ids) or not self.open

    def row(self, step: int) -> torch.Tensor:
        """The text row of step `step` [H] (only once `ready(step)`)."""
        if step < len(self.ids):
            return self._embed(self.ids[step])
        if self.open:
            raise ValueError(f"text row {step} has not arrived yet")
        return self.eos if step == len(self.ids) and self.eos is not None else self.pad

    def closed_rows(self) -> torch.Tensor:
        """Every row before the first `P` of a closed feed, or `P` alone if none: [N, H] (the official
        `trailing_text_hidden`)."""
        n = len(self.ids) + (self.eos is not None)
        return torch.stack([self.row(k) for k in range(max(n, 1))])
