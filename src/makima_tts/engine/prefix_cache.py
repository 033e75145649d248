"""The talker keys/values of the prompt rows a voice always has, computed once and reused.

A prompt's first `Prompt.shared_rows` rows (prompt.py) depend on the voice, language, instruct and text
mode only: the role rows, the codec control rows (think / language), the speaker row (x-vector or
CustomVoice speaker id), B + C(pad), an instruct's rows, and for an ICL clone the reference-transcript
rows (the rows after them pair target text with reference frames, so their keys/values depend on the
text; the codec-state priming of ICL clones is a separate per-voice cache, codec_stage.PrimedStates).
Causal attention makes the keys/values of those rows depend on those rows alone, so they are kept here,
keyed by the rows' bytes (a hit means exactly these inputs), least recently used out first.

A reserved utterance whose prefix is known starts with a one-row cache holding it (`seed`) and only its
other rows are prefilled, as a later chunk is. The reused keys/values were computed inside another
prompt's pass, with other matrix shapes, so they equal a fresh prefill within float noise, not bit for
bit (see tests/engine/test_step.py).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import TYPE_CHECKING

from ..model.kv_cache import KVCache
from .slots import SlotPool

if TYPE_CHECKING:
    from .step import PrefillPart

PREFIX_CACHE = 32  # distinct prefixes kept
MIN_SHARED_ROWS = 2


class PrefixCache:
    def __init__(self, pool: SlotPool, size: int = PREFIX_CACHE):
        self.pool, self.size = pool, size
        self._entries: OrderedDict[bytes, KVCache] = OrderedDict()
        self.hits = self.misses = 0

    @staticmethod
    def key(part: PrefillPart) -> bytes | None:
        rows = part.prompt.shared_rows
        if rows < MIN_SHARED_ROWS:
            return None
        shared = part.prompt.embeds[0, :rows].float().cpu().contiguous()  # [rows, H]
        return hashlib.sha256(shared.numpy().tobytes()).digest() + rows.to_bytes(4, "little")

    def seed(self, part: PrefillPart) -> None:
        """Before its first prefill: a known prefix goes into the part's own cache (its rows count as done);
        an unknown one is noted, to be kept once prefilled (`keep`)."""
        part.prefix_key = self.key(part)
        entry = self._entries.get(part.prefix_key) if part.prefix_key is not None else None
        if entry is None:
            self.misses += part.prefix_key is not None
            return
        self._entries.move_to_end(part.prefix_key)
        self.hits += 1
        rows = part.prompt.shared_rows
        part.scratch = self.pool.scratch_kv(part.prompt.embeds.shape[1])
        part.scratch.copy_row(0, entry, rows)
        part.done, part.prefix_key = rows, None

    def keep(self, part: PrefillPart, cache: KVCache, row: int) -> None:
        """After a pass over the part: its prefix, once wholly in `cache` row `row`, is kept."""
        rows = part.prompt.shared_rows
        if part.prefix_key is None or part.done < rows:
            return
        entry = self.pool.scratch_kv(rows)
        entry.copy_row(0, cache, rows, src_row=row)
        self._entries[part.prefix_key] = entry
        part.prefix_key = None
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
