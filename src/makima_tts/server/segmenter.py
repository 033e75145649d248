"""Cuts streaming input text (LLM tokens arriving piecemeal) into pieces worth synthesising alone.

`feed(text)` returns the complete pieces that are ready; `flush()` returns whatever is left. A piece ends
after a sentence terminator followed by whitespace (or straight after a CJK terminator); a piece that grows
long ends at a clause mark, and one that grows very long at the last space. Very short sentences are kept
and joined with the next one, so prosody does not suffer from one-word utterances.
"""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"[.!?…]+[\"')\]]*\s+|[。！？]+[」』）]*\s*|\n+")
_CLAUSE_END = re.compile(r"[,;:—]\s+|[，；：、]")


class TextSegmenter:
    def __init__(self, min_chars: int = 12, clause_chars: int = 120, max_chars: int = 300):
        self.min_chars = min_chars
        self.clause_chars = clause_chars
        self.max_chars = max_chars
        self._buffer = ""

    @property
    def pending(self) -> str:
        return self._buffer

    def feed(self, text: str) -> list[str]:
        self._buffer += text
        pieces = []
        while (cut := self._next_cut()) is not None:
            piece, self._buffer = self._buffer[:cut].strip(), self._buffer[cut:]
            if piece:
                pieces.append(piece)
        return pieces

    def flush(self) -> list[str]:
        piece, self._buffer = self._buffer.strip(), ""
        return [piece] if piece else []

    def _next_cut(self) -> int | None:
        """Index just past the first good boundary in the buffer, or None to wait for more text."""
        buf = self._buffer
        for match in _SENTENCE_END.finditer(buf):
            if len(buf[: match.end()].strip()) >= self.min_chars:
                return match.end()
        if len(buf) >= self.clause_chars:
            clauses = [m.end() for m in _CLAUSE_END.finditer(buf) if self.min_chars <= m.end() <= self.max_chars]
            if clauses:
                return clauses[-1]
        if len(buf) >= self.max_chars:
            space = buf.rfind(" ", self.min_chars, self.max_chars)
            return space + 1 if space > 0 else self.max_chars
        return None


def split_text(text: str, max_chars: int = 300) -> list[str]:
    """A whole text known up front: one piece (best prosody) unless it is long, then sentence pieces."""
    text = text.strip()
    if len(text) <= max_chars:
        return [text] if text else []
    segmenter = TextSegmenter(max_chars=max_chars)
    return segmenter.feed(text) + segmenter.flush()
