"""The slot pool: every per-stream generation tensor, one row per slot (one slot = one utterance in flight).

`SlotPool` owns, for `slots` rows:

    talker_kv, cp_kv     KV caches [layers, slots, kv_heads, capacity, head_dim] (model/kv_cache.py)
    lengths [S]          talker cache positions filled (device; `host_lengths` is the same on the host)
    last_token [S]       codebook 0 of the frame to make next
    past_hidden [S, H]   talker hidden state of the last position
    seen [S, V], generated [S]   repetition-penalty memory and tokens chosen so far
    occupied [S], eos_allowed [S]  row masks
    stepping [S]         occupied slots that make a frame this step (`stage_participation`); the others
                         wait for text and keep every piece of their state as it is
    params, draws        per-row sampling settings as tensors (read by sampling.RowSampling)
    text_rows [S, H]     the trailing text row each slot adds to its next talker step (staged)
    noise_c0 [S, V], noise_cp [S, 15, V_cp]   Exponential(1) noise staged for static frames

and the host-side `SlotSettings` of each occupied slot (with its `TextFeed`, text_feed.py). Slots are acquired lowest-index first, and a
frame runs on rows [0, n) with n one past the highest occupied slot, so every cache access is a plain
view. A released row is inert until the next `occupy`: its codebook 0 is reset to 0 here, and the frame
functions (step.py) mask its codes and token with `stepping`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..model.kv_cache import KVCache
from .sampling import RowSampling
from .text_feed import TextFeed
from .types import SamplingParams

PARAM_NAMES = ("temperature", "top_k", "top_p", "penalty", "sub_temperature", "sub_top_k", "sub_top_p")


@dataclass
class SlotSettings:
    """Host-side settings of one occupied slot."""

    sampling: SamplingParams
    generator: torch.Generator
    budget: int  # frames
    stop_on_eos: bool
    feed: TextFeed
    frames: int = 0
    stepping: bool = True  # makes a frame this step (False: waits for its next text row)

    @property
    def text_read(self) -> int:
        """The utterance's text tokens taken in by the frame it makes next."""
        return self.feed.read_by(self.frames)

    def generator_for(self, sub: bool) -> torch.Generator | None:
        """The generator when this slot samples and steps (codebooks 1..15 if `sub`, else codebook 0)."""
        draws = self.sampling.subtalker_dosample if sub else self.sampling.do_sample
        return self.generator if draws and self.stepping else None


class SlotPool:
    def __init__(self, tts, slots: int, max_context: int, static: bool = False):
        """`static`: caches at full size from the start and rope tables for the whole context, so
        static frames never reallocate (required for CUDA graphs)."""
        cfg = tts.config
        tc, cc = cfg.talker, cfg.code_predictor
        device, dtype = tts.device, tts.dtype
        self.slots = slots
        self.groups = tc.num_code_groups
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
        self.stepping = torch.zeros(slots, dtype=torch.bool, device=device)
        self.text_rows = torch.zeros(slots, tc.hidden_size, dtype=dtype, device=device)
        self.settings: list[SlotSettings | None] = [None] * slots
        self.params = {
            name: torch.ones(slots, dtype=torch.long if name.endswith("top_k") else torch.float32, device=device)
            for name in PARAM_NAMES
        }
        self.draws = {sub: torch.zeros(slots, dtype=torch.bool, device=device) for sub in (False, True)}
        self.noise_c0 = torch.ones(slots, vocab, device=device)
        self.noise_cp = torch.ones(slots, self.groups - 1, cc.vocab_size, device=device)

    @property
    def max_context(self) -> int:
        return self.talker_kv.max_capacity

    def scratch_kv(self, positions: int) -> KVCache:
        """A one-row talker cache of `positions` (a prompt prefilled in chunks, before it has its slot row)."""
        kv = self.talker_kv
        layers, _, heads, _, dim = kv.k.shape
        return KVCache(layers, 1, heads, dim, positions, kv.k.device, kv.k.dtype)

    # ---------------------------------------------------------------- free / acquire / release
    def free_slot(self) -> int | None:
        """The lowest free slot, or None when every slot is occupied."""
        return next((i for i, s in enumerate(self.settings) if s is None), None)

    def active(self) -> list[int]:
        return [i for i, s in enumerate(self.settings) if s is not None]

    def occupy(self, slot: int, settings: SlotSettings) -> None:
        """Take `slot` for a new utterance: its sampling tensors and repetition memory are set afresh
        (its caches and positions are overwritten by the prefill that follows)."""
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
        self.stepping[slot] = True  # the prefill steps it
        settings.stepping = True
        self.settings[slot] = settings

    def release(self, slot: int) -> None:
        """Free `slot`; its row computes inert values until the next `occupy`."""
        self.settings[slot] = None
        self.occupied[slot] = False
        self.stepping[slot] = False
        self.text_rows[slot] = 0
        self.last_token[slot] = 0

    # ---------------------------------------------------------------- shape of the next frame
    def rows_in_use(self) -> int:
        return self.active()[-1] + 1

    def context_in_use(self) -> int:
        """Cache positions the next talker step attends: one past the furthest occupied row."""
        return max(self.host_lengths[i] for i in self.active()) + 1

    # ---------------------------------------------------------------- per-row sampling
    def sampling(self, rows: slice, sub: bool, noise: torch.Tensor | None = None) -> RowSampling:
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

    # ---------------------------------------------------------------- staging (host -> device, before a frame)
    def stage_participation(self) -> list[int]:
        """Settle which occupied slots make the next frame: those whose next text row is known (or whose
        text is closed); the others wait. -> the stepping slots"""
        flags = [s is not None and s.feed.ready(s.frames) for s in self.settings]
        for s, flag in zip(self.settings, flags, strict=True):
            if s is not None:
                s.stepping = flag
        self.stepping.copy_(torch.tensor(flags))
        return [i for i, flag in enumerate(flags) if flag]

    def stage_text_rows(self, n: int) -> None:
        for i, s in enumerate(self.settings[:n]):
            if s is not None and s.stepping:
                self.text_rows[i] = s.feed.row(s.frames)

    def stage_noise(self, n: int) -> None:
        """Noise a static frame over rows [0, n) reads, drawn from each sampling slot's generator in the
        eager order (codebooks 1..15, then the next codebook 0)."""
        for i, s in enumerate(self.settings[:n]):
            if s is None or not s.stepping:
                continue
            sub = s.generator_for(sub=True)
            if sub is not None:
                for group in range(self.groups - 1):
                    self.noise_cp[i, group : group + 1].exponential_(1, generator=sub)
            if (generator := s.generator_for(sub=False)) is not None:
                self.noise_c0[i : i + 1].exponential_(1, generator=generator)

    def count_frame(self) -> None:
        """Host bookkeeping after a frame: one more frame and one more cache position per stepping slot."""
        for i, s in enumerate(self.settings):
            if s is not None and s.stepping:
                s.frames += 1
                self.host_lengths[i] += 1
