"""Stable token ids from text that arrives in pieces (an LLM's output, a few characters at a time).

`StableTokens.push(piece)` returns the ids that no later text can change; `close()` returns the rest.
Concatenated, they are exactly the ids of the whole text (`TextTokenizer.encode`), however it was split.
`StreamedText` applies this to an utterance's prompt text: its role ids and text ids are those that
`TextTokenizer.assistant_ids` of the whole text gives (sliced by position as the official code does).

Why that holds: byte-level BPE works inside one pre-tokenizer chunk at a time, so the ids of all chunks
but the last are final once a next chunk has begun; the last chunk may still grow ("Hel" -> "Hello",
" " -> "  " -> " world") and is held back. Text is NFC-normalised as it comes (NFC of the pending text
plus a piece equals NFC of the whole, since committed text never ends mid-composition): a chunk that
starts with a combining mark could still compose with the character before it, so the chunk before it
is held back too.
"""

from __future__ import annotations

import unicodedata

from .text import ASSISTANT_PREFIX, ASSISTANT_SUFFIX, TextTokenizer


class StableTokens:
    def __init__(self, tokenizer: TextTokenizer, prefix: str = ""):
        """`prefix`: text known to come first (its ids are committed like the rest)."""
        self._tokenizer = tokenizer
        self._pending = tokenizer.normalize(prefix)

    @property
    def pending(self) -> str:
        """The normalised text received but not yet committed."""
        return self._pending

    def push(self, text: str) -> list[int]:
        """Add `text`; -> the ids that are now final."""
        tok = self._tokenizer
        self._pending = tok.normalize(self._pending + text)
        starts = tok.chunk_starts(self._pending)
        cut = starts.pop() if starts else 0
        while cut > 0 and unicodedata.combining(self._pending[cut]):
            cut = starts.pop() if starts else 0
        done, self._pending = self._pending[:cut], self._pending[cut:]
        return tok.encode(done) if done else []

    def close(self) -> list[int]:
        """No more text: -> the ids of what was held back."""
        done, self._pending = self._pending, ""
        return self._tokenizer.encode(done) if done else []


class StreamedText:
    """The prompt text of an utterance arriving in pieces: `role` ([:3] of the assistant ids, known once
    the text has begun) and `ids` (the text ids [3:-5], growing as they become final)."""

    def __init__(self, tokenizer: TextTokenizer):
        self._stable = StableTokens(tokenizer, ASSISTANT_PREFIX)
        self._head = tokenizer.encode("<|im_start|>")
        self._tail = tokenizer.encode(ASSISTANT_SUFFIX)[:-5]  # in the text slice (none with the Qwen vocabulary)
        self._committed: list[int] = []  # ids of ASSISTANT_PREFIX + text so far
        self.closed = False

    @property
    def role(self) -> list[int]:
        return (self._head + self._committed)[:3]

    @property
    def ids(self) -> list[int]:
        return (self._head + self._committed)[3:] + (self._tail if self.closed else [])

    def push(self, text: str) -> list[int]:
        """More text; -> the text ids it made final."""
        return self._take(self._stable.push(text))

    def close(self) -> list[int]:
        """The end of the text; -> the last text ids."""
        ids = self._take(self._stable.close())
        self.closed = True
        return ids + self._tail

    def _take(self, new: list[int]) -> list[int]:
        before = len(self.ids)
        self._committed += new
        return self.ids[before:]
