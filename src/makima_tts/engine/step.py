"""The frame functions: prefill, predict codes, talker step, over the models and a `SlotPool`.

Prefill is batched: `prefill_batch` packs whole prompts and chunks of long ones into one talker pass.

`FrameStep` holds no per-stream state of its own (that is the pool's, slots.py); it runs one frame for
every occupied slot in two batched calls:

    predict_frame: [past_hidden, C(c0)] -> c1..c15 (code predictor, 16 positions, fresh cache per frame)
    advance:       sum of 16 code embeddings + trailing text row -> next c0 (talker)

Rows that do not step (`pool.stepping`, set by `SlotPool.stage_participation`) compute throwaway
values and draw no random numbers. A free slot's row stays inert: its codebook 0 and every code of its
frame row are 0 (never the end token 2150 a finished utterance left behind, which is no codec id). A slot
that waits for text keeps its state exactly: its codebook 0, hidden state, length, repetition memory
and cache (its throwaway talker key/value goes to its next position, which its next real step
overwrites before reading). Both hold in eager and static frames alike (the masks are device tensors,
so captured graphs mask too).

Two ways to run a frame, giving the same codes:
- eager (`predict_frame`, then `advance`): shapes fit the live rows and context, and the engine hands
  the codes to its codec thread between the two calls;
- static (`begin_static_frame`, `static_frame(rows, context)`, `end_static_frame`): shapes are fixed
  buckets and nothing in `static_frame` reads the device from the host, so it can be captured as a CUDA
  graph (static_frames.py). Random noise and trailing text rows are staged before it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from ..model.kv_cache import KVCache, PackedView, Segment
from .prefix_cache import PrefixCache
from .prompt import Prompt
from .sampling import RowSampling, choose, choose_codebook0
from .slots import SlotPool, SlotSettings


@dataclass
class PrefillPart:
    """An utterance on its way into `slot`: its prompt and how many of its rows are prefilled."""

    slot: int
    prompt: Prompt
    settings: SlotSettings
    done: int = 0  # prompt rows already in a cache
    scratch: KVCache | None = None  # a chunked prompt's own one-row cache, until its last chunk
    prefix_key: bytes | None = None  # its shared rows, to be kept once prefilled (prefix_cache.py)

    @property
    def remaining(self) -> int:
        return self.prompt.embeds.shape[1] - self.done


class FrameStep:
    def __init__(self, tts, pool: SlotPool):
        self.tts, self.pool = tts, pool
        tc = tts.config.talker
        self.groups = tc.num_code_groups
        eos, vocab = tc.codec_eos_token_id, tc.vocab_size
        self.suppress = torch.zeros(vocab, dtype=torch.bool, device=tts.device)  # control ids, never chosen
        self.suppress[vocab - 1024 :] = True
        self.suppress[eos] = False
        self.eos_mask = torch.zeros(vocab, dtype=torch.bool, device=tts.device)
        self.eos_mask[eos] = True

    # ---------------------------------------------------------------- admission
    def prefill(self, slot: int, prompt: Prompt, settings: SlotSettings) -> int:
        """One whole prompt alone: occupy `slot`, fill its cache and pick codebook 0 of frame 0."""
        part = PrefillPart(slot, prompt, settings)
        return self.prefill_batch([(part, part.remaining)])[slot]

    @torch.inference_mode()
    def prefill_batch(self, chunks: list[tuple[PrefillPart, int]], prefixes: PrefixCache | None = None) -> dict[int, int]:
        """The next `n` rows of each part's prompt, all packed into one talker pass (kv_cache.PackedView).
        A part whose prompt is then complete occupies its slot: its cache rows, length, past_hidden and
        last token are set exactly as a prefill alone sets them. -> {slot: codebook 0 of frame 0} of those.

        A whole prompt is written straight into its slot's cache row; a prompt taken in chunks fills a
        one-row cache of its own, copied into the slot with its last chunk (frames run between chunks,
        and their free rows write into the slot pool); so does a prompt whose shared prefix was reused.
        `prefixes`: keeps the shared rows' keys/values of the parts that computed them."""
        pool, talker = self.pool, self.tts.talker
        segments = []
        for part, n in chunks:
            if part.done == 0 and n == part.remaining:
                segments.append(Segment(pool.talker_kv, part.slot, 0, n))
            else:
                if part.scratch is None:
                    part.scratch = pool.scratch_kv(part.prompt.embeds.shape[1])
                segments.append(Segment(part.scratch, 0, part.done, n))
        view = PackedView(segments)
        embeds = torch.cat([part.prompt.embeds[:, part.done : part.done + n] for part, n in chunks], dim=1)  # [1, S, H]
        hidden = talker(embeds, view.positions(embeds.device), view, None, None)  # [1, S, H]
        chosen, end = {}, 0
        for (part, n), segment in zip(chunks, segments, strict=True):
            end += n
            part.done += n
            if prefixes is not None:
                prefixes.keep(part, segment.cache, segment.row)
            if part.remaining == 0:
                chosen[part.slot] = self._occupy(part, hidden[:, end - 1])
        return chosen

    def _occupy(self, part: PrefillPart, last_hidden: torch.Tensor) -> int:
        # last_hidden [1, H]: the prompt's last position
        pool, slot, length = self.pool, part.slot, part.prompt.embeds.shape[1]
        if part.scratch is not None:
            pool.talker_kv.copy_row(slot, part.scratch, length)
            part.scratch = None
        pool.occupy(slot, part.settings)
        rows = slice(slot, slot + 1)
        token = self._choose_c0(self.tts.talker.logits(last_hidden), rows, pool.sampling(rows, sub=False),
                                pool.stepping[rows])
        pool.lengths[slot] = length
        pool.host_lengths[slot] = length
        pool.last_token[slot] = token[0]
        pool.past_hidden[slot] = last_hidden[0]
        return int(token[0])

    # ---------------------------------------------------------------- one frame for every slot, eager
    @torch.inference_mode()
    def predict_frame(self) -> torch.Tensor:
        """Code predictor for every stepping slot: codebook 0 (already chosen) + 15 more. -> [n, 16]"""
        n = self.pool.rows_in_use()
        return self._predict(n, self.pool.sampling(slice(0, n), sub=True))

    @torch.inference_mode()
    def advance(self, frame: torch.Tensor) -> torch.Tensor:
        """Talker step on the frame just made (+ the next trailing text row); picks the next codebook 0.
        frame [n, 16] -> next codebook 0 [n]"""
        n = frame.shape[0]
        self.pool.stage_text_rows(n)
        token = self._advance(frame, self.pool.context_in_use(), self.pool.sampling(slice(0, n), sub=False))
        self.pool.count_frame()
        return token

    # ---------------------------------------------------------------- one frame, static shapes
    def begin_static_frame(self, n: int) -> None:
        """Stage what a static frame over rows [0, n) reads: noise and trailing text rows."""
        self.pool.stage_noise(n)
        self.pool.stage_text_rows(n)

    @torch.inference_mode()
    def static_frame(self, n: int, context: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A whole frame over rows [0, n) with attention over `context` cache positions; no host reads
        of device data. -> codes [n, 16], next codebook 0 [n]"""
        pool, rows = self.pool, slice(0, n)
        frame = self._predict(n, pool.sampling(rows, sub=True, noise=pool.noise_cp[rows]))
        return frame, self._advance(frame, context, pool.sampling(rows, sub=False, noise=pool.noise_c0[rows]))

    def end_static_frame(self) -> None:
        self.pool.count_frame()

    # ---------------------------------------------------------------- shared pieces
    def _choose_c0(self, logits: torch.Tensor, rows: slice, sampling: RowSampling, stepping: torch.Tensor
                   ) -> torch.Tensor:
        # logits [n, V] for slots rows.start..rows.stop-1; stepping [n] bool -> [n]
        pool = self.pool
        eos_blocked = ~pool.eos_allowed[rows] | (pool.generated[rows] < 2)  # min_new_tokens = 2
        token = choose_codebook0(
            logits, sampling, pool.seen[rows], pool.params["penalty"][rows], eos_blocked, self.eos_mask, self.suppress,
        )
        chosen = torch.zeros_like(pool.seen[rows]).scatter_(1, token[:, None], True)  # [n, V]
        pool.seen[rows] |= chosen & stepping[:, None]
        pool.generated[rows] += stepping.long()
        return token

    def _predict(self, n: int, sampling: RowSampling) -> torch.Tensor:
        # static frames carry noise [n, 15, V_cp]: one [n, V_cp] slice per codebook
        cp, pool = self.tts.code_predictor, self.pool
        stepping = pool.stepping[:n]
        c0 = pool.last_token[:n]
        codes = [c0]
        noise = sampling.noise
        start = torch.cat((pool.past_hidden[:n, None], self.tts.talker.codec_embedding(c0)[:, None]), dim=1)  # [n, 2, H]
        hidden = cp(start, 0, pool.cp_kv.view(slice(0, n), 2))  # [n, 2, H_cp]
        for group in range(1, self.groups):
            if group > 1:
                emb = cp.codec_embedding[group - 2](codes[-1])[:, None]  # [n, 1, H]
                hidden = cp(emb, group, pool.cp_kv.view(slice(0, n), group + 1))
            group_sampling = sampling if noise is None else replace(sampling, noise=noise[:, group - 1])
            codes.append(choose(cp.logits(hidden[:, -1], group), group_sampling))
        return torch.stack(codes, dim=1) * stepping[:, None]  # [n, 16]; rows not stepping all 0

    def _advance(self, frame: torch.Tensor, context: int, sampling: RowSampling) -> torch.Tensor:
        # frame [n, 16]; context: cache positions attended (> every occupied row's position)
        n = frame.shape[0]
        talker, cp, pool = self.tts.talker, self.tts.code_predictor, self.pool
        per_codebook = torch.cat((talker.codec_embedding(frame[:, :1]), cp.embed_codes(frame[:, 1:])), dim=1)
        embed = per_codebook.sum(1, keepdim=True)  # [n, 16, H] -> [n, 1, H]
        stepping = pool.stepping[:n]
        # empty rows write harmlessly at position 0, waiting rows at their next one (rewritten when they step)
        pos = torch.where(pool.occupied[:n], pool.lengths[:n], 0)
        mask = (torch.arange(context, device=pos.device)[None] <= pos[:, None])[:, None, None]  # [n,1,1,T]
        hidden = talker(embed + pool.text_rows[:n, None], pos[:, None], pool.talker_kv.view(slice(0, n), context),
                        pos, mask)  # [n, 1, H]
        token = self._choose_c0(talker.logits(hidden[:, -1]), slice(0, n), sampling, stepping)
        # a row that does not step keeps its codebook 0 (0 for a free row: its throwaway pick, which may
        # be the end token, never stays)
        token = torch.where(stepping, token, pool.last_token[:n])
        pool.past_hidden[:n] = torch.where(stepping[:, None], hidden[:, -1], pool.past_hidden[:n])
        pool.last_token[:n] = token
        pool.lengths[:n] += stepping.long()
        return token
