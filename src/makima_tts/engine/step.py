"""Lockstep frame generation over a pool of slots: one slot = one utterance in flight.

`FrameBatch` owns every per-stream generation tensor (talker and code-predictor KV caches, last
codebook-0 token, past hidden state, repetition-penalty memory, sampling settings). A frame advances
every occupied slot in two batched calls:

    predict_frame: [past_hidden, C(c0)] -> c1..c15 (code predictor, 16 positions, fresh cache per frame)
    advance:       sum of 16 code embeddings + trailing text row -> next c0 (talker)

Slots are filled lowest-index first and a step runs on rows [0, n) where n is one past the highest
occupied slot, so every cache access is a plain view. Rows of empty slots inside that range compute
throwaway values, draw no random numbers and stay inert: their codebook 0 and every code of their frame
row are 0 (never the end token 2150 a finished utterance left behind, which is no codec id), in eager
and static frames alike (`occupied` is a device tensor, so captured graphs mask too).

Two ways to run a frame, giving the same codes:
- eager (`predict_frame`, then `advance`): shapes fit the live rows and context, and the engine hands
  the codes to its codec thread between the two calls;
- static (`begin_static_frame`, `static_frame(rows, context)`, `end_static_frame`): shapes are fixed
  buckets and nothing in `static_frame` reads the device from the host, so it can be captured as a CUDA
  graph (`static_frames.py`). Random noise and trailing text rows are staged before it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from .prompt import Prompt
from .sampling import RowSampling, choose, choose_codebook0
from .types import SamplingParams

PARAM_NAMES = ("temperature", "top_k", "top_p", "penalty", "sub_temperature", "sub_top_k", "sub_top_p")


@dataclass
class SlotSettings:
    sampling: SamplingParams
    generator: torch.Generator
    budget: int  # frames
    stop_on_eos: bool
    trailing: torch.Tensor  # [N, H]
    pad: torch.Tensor  # [H]
    frames: int = 0

    def trailing_row(self) -> torch.Tensor:
        return self.trailing[self.frames] if self.frames < self.trailing.shape[0] else self.pad

    def generator_for(self, sub: bool) -> torch.Generator | None:
        """The generator when this slot samples (codebooks 1..15 if `sub`, else codebook 0)."""
        return self.generator if (self.sampling.subtalker_dosample if sub else self.sampling.do_sample) else None


class FrameBatch:
    def __init__(self, tts, slots: int, max_context: int, static: bool = False):
        """`static`: caches at full size from the start and rope tables for the whole context, so
        static frames never reallocate (required for CUDA graphs)."""
        from ..model.kv_cache import KVCache

        self.tts = tts
        cfg = tts.config
        self.slots = slots
        self.eos_id = cfg.talker.codec_eos_token_id
        self.groups = cfg.talker.num_code_groups
        device, dtype = tts.device, tts.dtype
        tc, cc = cfg.talker, cfg.code_predictor
        start_capacity = max_context if static else min(512, max_context)
        self.talker_kv = KVCache(
            tc.num_hidden_layers, slots, tc.num_key_value_heads, tc.head_dim, start_capacity, device, dtype,
            max_capacity=max_context,
        )
        self.cp_kv = KVCache(cc.num_hidden_layers, slots, cc.num_key_value_heads, cc.head_dim, self.groups, device, dtype)
        if static:
            tts.talker.stack.rotary.tables(max_context, device, dtype)
            tts.code_predictor.stack.rotary.tables(self.groups, device, dtype)
        vocab = tc.vocab_size
        self.lengths = torch.zeros(slots, dtype=torch.long, device=device)
        self.host_lengths = [0] * slots  # the same, readable without a device sync
        self.last_token = torch.zeros(slots, dtype=torch.long, device=device)
        self.past_hidden = torch.zeros(slots, tc.hidden_size, dtype=dtype, device=device)
        self.seen = torch.zeros(slots, vocab, dtype=torch.bool, device=device)
        self.generated = torch.zeros(slots, dtype=torch.long, device=device)
        self.occupied = torch.zeros(slots, dtype=torch.bool, device=device)
        self.eos_allowed = torch.zeros(slots, dtype=torch.bool, device=device)
        self.text_rows = torch.zeros(slots, tc.hidden_size, dtype=dtype, device=device)
        self.suppress = torch.zeros(vocab, dtype=torch.bool, device=device)
        self.suppress[vocab - 1024 :] = True
        self.suppress[self.eos_id] = False
        self.eos_mask = torch.zeros(vocab, dtype=torch.bool, device=device)
        self.eos_mask[self.eos_id] = True
        self.settings: list[SlotSettings | None] = [None] * slots
        self.params = {
            name: torch.ones(slots, dtype=torch.long if name.endswith("top_k") else torch.float32, device=device)
            for name in PARAM_NAMES
        }
        self.draws = {sub: torch.zeros(slots, dtype=torch.bool, device=device) for sub in (False, True)}
        # Noise for static frames: codebook 0 [slots, V_talker]; codebooks 1..15 [slots, 15, V_cp].
        self.noise_c0 = torch.ones(slots, vocab, device=device)
        self.noise_cp = torch.ones(slots, self.groups - 1, cc.vocab_size, device=device)

    @property
    def max_context(self) -> int:
        return self.talker_kv.max_capacity

    def free_slot(self) -> int | None:
        return next((i for i, s in enumerate(self.settings) if s is None), None)

    def active(self) -> list[int]:
        return [i for i, s in enumerate(self.settings) if s is not None]

    def release(self, slot: int) -> None:
        """Free `slot`; its row computes inert values until the next prefill sets it again."""
        self.settings[slot] = None
        self.occupied[slot] = False
        self.text_rows[slot] = 0
        self.last_token[slot] = 0

    # ---------------------------------------------------------------- sampling settings per row
    def _set_slot(self, slot: int, settings: SlotSettings) -> None:
        p = settings.sampling
        values = {
            "temperature": p.temperature, "top_k": p.top_k or 0, "top_p": p.top_p, "penalty": p.repetition_penalty,
            "sub_temperature": p.subtalker_temperature, "sub_top_k": p.subtalker_top_k or 0,
            "sub_top_p": p.subtalker_top_p,
        }
        for name, value in values.items():
            self.params[name][slot] = value
        self.draws[False][slot] = p.do_sample
        self.draws[True][slot] = p.subtalker_dosample
        self.eos_allowed[slot] = settings.stop_on_eos
        self.occupied[slot] = True
        self.seen[slot] = False
        self.generated[slot] = 0
        self.settings[slot] = settings

    def _rows(self, rows: slice, sub: bool, noise: torch.Tensor | None = None) -> RowSampling:
        """Settings of slots `rows` for codebook 0 or (sub) codebooks 1..15; `noise` given = a static
        frame (worst-case control flow, pre-drawn noise)."""
        prefix = "sub_" if sub else ""
        common = {
            "temperature": self.params[prefix + "temperature"][rows],
            "top_k": self.params[prefix + "top_k"][rows],
            "top_p": self.params[prefix + "top_p"][rows],
            "draw": self.draws[sub][rows],
        }
        if noise is not None:
            return RowSampling(**common, k_max=noise.shape[-1], any_top_p=True, any_draw=True, noise=noise)
        picked = [s.sampling for s in self.settings[rows] if s is not None]
        generators = [s.generator_for(sub) if s else None for s in self.settings[rows]]
        return RowSampling(
            **common,
            k_max=max(((p.subtalker_top_k if sub else p.top_k) or 0 for p in picked), default=0),
            any_top_p=any((p.subtalker_top_p if sub else p.top_p) < 1.0 for p in picked),
            any_draw=any(g is not None for g in generators),
            generators=generators,
        )

    def _choose_c0(self, logits: torch.Tensor, rows: slice, sampling: RowSampling) -> torch.Tensor:
        # logits [n, V] for slots rows.start..rows.stop-1 -> [n]
        eos_blocked = ~self.eos_allowed[rows] | (self.generated[rows] < 2)  # min_new_tokens = 2
        token = choose_codebook0(
            logits, sampling, self.seen[rows], self.params["penalty"][rows], eos_blocked, self.eos_mask,
            self.suppress,
        )
        self.seen[rows].scatter_(1, token[:, None], True)
        self.generated[rows] += 1
        return token

    # ---------------------------------------------------------------- admission
    @torch.inference_mode()
    def prefill(self, slot: int, prompt: Prompt, settings: SlotSettings) -> int:
        """Run the talker over the prompt into `slot`'s cache and pick codebook 0 of frame 0."""
        self._set_slot(slot, settings)
        length = prompt.embeds.shape[1]
        rows = slice(slot, slot + 1)
        hidden = self.tts.talker(prompt.embeds, range(length), self.talker_kv.view(rows, length), 0, None)
        token = self._choose_c0(self.tts.talker.logits(hidden[:, -1]), rows, self._rows(rows, sub=False))
        self.lengths[slot] = length
        self.host_lengths[slot] = length
        self.last_token[slot] = token[0]
        self.past_hidden[slot] = hidden[0, -1]
        return int(token[0])

    # ---------------------------------------------------------------- one frame for every slot, eager
    def rows_in_use(self) -> int:
        return self.active()[-1] + 1

    def context_in_use(self) -> int:
        """Cache positions the next talker step attends: one past the furthest occupied row."""
        return max(self.host_lengths[i] for i in self.active()) + 1

    @torch.inference_mode()
    def predict_frame(self) -> torch.Tensor:
        """Code predictor for every occupied slot: codebook 0 (already chosen) + 15 more. -> [n, 16]"""
        n = self.rows_in_use()
        return self._predict(n, self._rows(slice(0, n), sub=True))

    @torch.inference_mode()
    def advance(self, frame: torch.Tensor) -> torch.Tensor:
        """Talker step on the frame just made (+ the next trailing text row); picks the next codebook 0.
        frame [n, 16] -> next codebook 0 [n]"""
        n = frame.shape[0]
        self._stage_text_rows(n)
        token = self._advance(frame, self.context_in_use(), self._rows(slice(0, n), sub=False))
        self._count_frame()
        return token

    # ---------------------------------------------------------------- one frame, static shapes
    def begin_static_frame(self, n: int) -> None:
        """Stage what a static frame over rows [0, n) reads: noise drawn from each sampling slot's
        generator in the eager order (codebooks 1..15, then the next codebook 0), and text rows."""
        for i, s in enumerate(self.settings[:n]):
            if s is None:
                continue
            sub = s.generator_for(sub=True)
            if sub is not None:
                for group in range(self.groups - 1):
                    self.noise_cp[i, group : group + 1].exponential_(1, generator=sub)
            if (generator := s.generator_for(sub=False)) is not None:
                self.noise_c0[i : i + 1].exponential_(1, generator=generator)
        self._stage_text_rows(n)

    @torch.inference_mode()
    def static_frame(self, n: int, context: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A whole frame over rows [0, n) with attention over `context` cache positions; no host reads
        of device data. -> codes [n, 16], next codebook 0 [n]"""
        rows = slice(0, n)
        frame = self._predict(n, self._rows(rows, sub=True, noise=self.noise_cp[rows]))
        return frame, self._advance(frame, context, self._rows(rows, sub=False, noise=self.noise_c0[rows]))

    def end_static_frame(self) -> None:
        self._count_frame()

    # ---------------------------------------------------------------- shared pieces
    def _predict(self, n: int, sampling: RowSampling) -> torch.Tensor:
        # static frames carry noise [n, 15, V_cp]: one [n, V_cp] slice per codebook
        cp = self.tts.code_predictor
        occupied = self.occupied[:n]
        c0 = self.last_token[:n]
        codes = [c0]
        noise = sampling.noise
        start = torch.cat((self.past_hidden[:n, None], self.tts.talker.codec_embedding(c0)[:, None]), dim=1)
        hidden = cp(start, 0, self.cp_kv.view(slice(0, n), 2))  # [n, 2, H_cp]
        for group in range(1, self.groups):
            if group > 1:
                emb = cp.codec_embedding[group - 2](codes[-1])[:, None]  # [n, 1, H]
                hidden = cp(emb, group, self.cp_kv.view(slice(0, n), group + 1))
            group_sampling = sampling if noise is None else replace(sampling, noise=noise[:, group - 1])
            codes.append(choose(cp.logits(hidden[:, -1], group), group_sampling))
        return torch.stack(codes, dim=1) * occupied[:, None]  # [n, 16]; free rows all 0

    def _advance(self, frame: torch.Tensor, context: int, sampling: RowSampling) -> torch.Tensor:
        # frame [n, 16]; context: cache positions attended (> every occupied row's position)
        n = frame.shape[0]
        talker, cp = self.tts.talker, self.tts.code_predictor
        per_codebook = torch.cat((talker.codec_embedding(frame[:, :1]), cp.embed_codes(frame[:, 1:])), dim=1)
        embed = per_codebook.sum(1, keepdim=True)  # [n, 16, H] -> [n, 1, H]
        occupied = self.occupied[:n]
        pos = torch.where(occupied, self.lengths[:n], 0)  # empty rows write harmlessly at position 0
        mask = (torch.arange(context, device=pos.device)[None] <= pos[:, None])[:, None, None]  # [n,1,1,T]
        hidden = talker(embed + self.text_rows[:n, None], pos[:, None], self.talker_kv.view(slice(0, n), context),
                        pos, mask)
        token = self._choose_c0(talker.logits(hidden[:, -1]), slice(0, n), sampling)
        token = token * occupied  # a free row's throwaway pick (it may be the end token) never stays
        self.past_hidden[:n] = hidden[:, -1]
        self.last_token[:n] = token
        self.lengths[:n] += occupied.long()
        return token

    def _stage_text_rows(self, n: int) -> None:
        for i, s in enumerate(self.settings[:n]):
            if s is not None:
                self.text_rows[i] = s.trailing_row()

    def _count_frame(self) -> None:
        for i, s in enumerate(self.settings):
            if s is not None:
                s.frames += 1
                self.host_lengths[i] += 1
