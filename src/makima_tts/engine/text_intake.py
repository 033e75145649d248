"""Streamed text on the engine's generation thread: the text of one open job, from pieces to feed rows.

    caller thread       Job.append_text(text, close) -> TextPiece (a typed message, engine deque + lock)
    generation thread   OpenText.take(piece): stable token ids (text_stream.StreamedText)
                          before admission: kept, until the prefill's text tokens are there
                          (`prefill_ready`; prompt.prefill_text_tokens) or the text is closed
                          after admission:  appended to the slot's TextFeed, frame budget recomputed;
                          a close closes the feed (its E row follows the last token)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from ..text_stream import StreamedText
from .prompt import Prompt, PromptText, prefill_text_tokens
from .slots import SlotSettings
from .types import SpeechRequest

if TYPE_CHECKING:
    from .job import Job


class TextPiece(NamedTuple):
    job: Job
    text: str
    close: bool  # the end of the job's text (after `text`)


class OpenText:
    def __init__(self, tts, request: SpeechRequest):
        self._tts, self._request = tts, request
        self._streamed = StreamedText(tts.tokenizer)
        self._needed: int | None = -1  # prefill_text_tokens, once asked (-1: not yet)
        self._prompt: Prompt | None = None
        self._settings: SlotSettings | None = None
        self._budget: Callable[[], int] | None = None

    @property
    def closed(self) -> bool:
        return self._streamed.closed

    def take(self, piece: TextPiece) -> None:
        if self._streamed.closed:  # text after the end (a late message): nothing to add
            return
        new = self._streamed.push(piece.text)
        if piece.close:
            new += self._streamed.close()
        if self._settings is None:
            return
        if new:
            self._settings.feed.extend(new)
            self._prompt.text_tokens += len(new)
            self._settings.budget = self._budget()
        if piece.close:
            self._settings.feed.close()

    def prefill_ready(self) -> bool:
        """Whether the prompt can be built: the text is closed or has the tokens its prefill takes."""
        if self._streamed.closed:
            return True
        if self._needed == -1:
            self._needed = prefill_text_tokens(self._request, self._tts.config, self._tts.tokenizer)
        return self._needed is not None and len(self._streamed.ids) >= self._needed

    def prompt_text(self) -> PromptText:
        return PromptText(self._streamed.role, self._streamed.ids, open=not self._streamed.closed)

    def admitted(self, prompt: Prompt, settings: SlotSettings, budget: Callable[[], int]) -> None:
        """From now on new tokens go to `settings.feed`; `budget()` is the frame budget for the text so far."""
        self._prompt, self._settings, self._budget = prompt, settings, budget
