"""Lockstep frame generation over a pool of slots: one slot = one utterance in flight.

`FrameBatch` owns every per-stream generation tensor (talker and code-predictor KV caches, last
codebook-0 token, past hidden state, repetition-penalty memory, sampling settings). A step advances
every occupied slot by one frame in two batched calls; the engine hands the codes to its codec stage
(`codec_stage.py`, its own thread) between them, so audio is made while the talker moves on:

    predict_frame: [past_hidden, C(c0)] -> c1..c15 (code predictor, 16 positions, fresh cache per frame)
    advance:       sum of 16 code embeddings + trailing text row -> next c0 (talker)

Slots are filled lowest-index first and a step runs on rows [0, n) where n is one past the highest
occupied slot, so every cache access is a plain view. Rows of empty slots inside that range compute
throwaway values and draw no random numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .prompt import Prompt
from .sampling import RowSampling, choose, choose_codebook0
from .types import SamplingParams


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


class FrameBatch:
    def __init__(self, tts, slots: int, max_context: int):
        from ..model.kv_cache import KVCache

        self.tts = tts
        cfg = tts.config
        self.slots = slots
        self.eos_id = cfg.talker.codec_eos_token_id
        self.groups = cfg.talker.num_code_groups
        device, dtype = tts.device, tts.dtype
        tc, cc = cfg.talker, cfg.code_predictor
        self.talker_kv = KVCache(
            tc.num_hidden_layers, slots, tc.num_key_value_heads, tc.head_dim, min(512, max_context), device, dtype,
            max_capacity=max_context,
        )
        self.cp_kv = KVCache(cc.num_hidden_layers, slots, cc.num_key_value_heads, cc.head_dim, self.groups, device, dtype)
        vocab = tc.vocab_size
        self.lengths = torch.zeros(slots, dtype=torch.long, device=device)
        self.last_token = torch.zeros(slots, dtype=torch.long, device=device)
        self.past_hidden = torch.zeros(slots, tc.hidden_size, dtype=dtype, device=device)
        self.seen = torch.zeros(slots, vocab, dtype=torch.bool, device=device)
        self.generated = torch.zeros(slots, dtype=torch.long, device=device)
        self.suppress = torch.zeros(vocab, dtype=torch.bool, device=device)
        self.suppress[vocab - 1024 :] = True
        self.suppress[self.eos_id] = False
        self.eos_mask = torch.zeros(vocab, dtype=torch.bool, device=device)
        self.eos_mask[self.eos_id] = True
        self.settings: list[SlotSettings | None] = [None] * slots
        names = ("temperature", "top_k", "top_p", "penalty", "sub_temperature", "sub_top_k", "sub_top_p")
        self.params = {
            name: torch.ones(slots, dtype=torch.long if name.endswith("top_k") else torch.float32, device=device)
            for name in names
        }

    @property
    def max_context(self) -> int:
        return self.talker_kv.max_capacity

    def free_slot(self) -> int | None:
        return next((i for i, s in enumerate(self.settings) if s is None), None)

    def active(self) -> list[int]:
        return [i for i, s in enumerate(self.settings) if s is not None]

    def release(self, slot: int) -> None:
        self.settings[slot] = None

    # ---------------------------------------------------------------- sampling settings per row
    def _set_params(self, slot: int, p: SamplingParams) -> None:
        values = {
            "temperature": p.temperature, "top_k": p.top_k or 0, "top_p": p.top_p, "penalty": p.repetition_penalty,
            "sub_temperature": p.subtalker_temperature, "sub_top_k": p.subtalker_top_k or 0,
            "sub_top_p": p.subtalker_top_p,
        }
        for name, value in values.items():
            self.params[name][slot] = value

    def _rows(self, rows: range, sub: bool) -> RowSampling:
        prefix = "sub_" if sub else ""
        window = slice(rows.start, rows.stop)
        picked = [self.settings[i] for i in rows]
        sampling = [bool(s and (s.sampling.subtalker_dosample if sub else s.sampling.do_sample)) for s in picked]
        top_k = [(s.sampling.subtalker_top_k if sub else s.sampling.top_k) or 0 for s in picked if s]
        top_p = [s.sampling.subtalker_top_p if sub else s.sampling.top_p for s in picked if s]
        return RowSampling(
            temperature=self.params[prefix + "temperature"][window],
            top_k=self.params[prefix + "top_k"][window],
            top_p=self.params[prefix + "top_p"][window],
            sampling=sampling,
            generators=[s.generator if s else None for s in picked],
            k_max=max(top_k, default=0),
            any_top_p=any(p < 1.0 for p in top_p),
        )

    def _choose_c0(self, logits: torch.Tensor, rows: range) -> torch.Tensor:
        rs = self._rows(rows, sub=False)
        penalty = self.params["penalty"][rows.start : rows.stop]
        eos_blocked = torch.tensor(
            [(not s.stop_on_eos) if s else True for s in (self.settings[i] for i in rows)],
            dtype=torch.bool,
            device=logits.device,
        )
        eos_blocked |= self.generated[rows.start : rows.stop] < 2  # min_new_tokens = 2
        token = choose_codebook0(
            logits, rs, self.seen[rows.start : rows.stop], penalty, eos_blocked, self.eos_mask, self.suppress
        )
        idx = torch.arange(rows.start, rows.stop, device=logits.device)
        self.seen[idx, token] = True
        self.generated[rows.start : rows.stop] += 1
        return token

    # ---------------------------------------------------------------- admission
    @torch.inference_mode()
    def prefill(self, slot: int, prompt: Prompt, settings: SlotSettings) -> int:
        """Run the talker over the prompt into `slot`'s cache and pick codebook 0 of frame 0."""
        self.settings[slot] = settings
        self._set_params(slot, settings.sampling)
        length = prompt.embeds.shape[1]
        rows = slice(slot, slot + 1)
        positions = torch.arange(length, device=self.lengths.device)[None]
        hidden = self.tts.talker(prompt.embeds, positions, self.talker_kv.view(rows, length), 0, None)
        self.seen[slot] = False
        self.generated[slot] = 0
        token = self._choose_c0(self.tts.talker.logits(hidden[:, -1]), range(slot, slot + 1))
        self.lengths[slot] = length
        self.last_token[slot] = token[0]
        self.past_hidden[slot] = hidden[0, -1]
        return int(token[0])

    # ---------------------------------------------------------------- one frame for every slot
    @torch.inference_mode()
    def predict_frame(self) -> torch.Tensor:
        """Code predictor for every occupied slot: codebook 0 (already chosen) + 15 more. -> [n, 16]"""
        n = self.active()[-1] + 1
        cp = self.tts.code_predictor
        c0 = self.last_token[:n]
        codes = [c0]
        sub_rows = self._rows(range(0, n), sub=True)
        start = torch.cat((self.past_hidden[:n, None], self.tts.talker.codec_embedding(c0)[:, None]), dim=1)
        hidden = cp(start, 0, self.cp_kv.view(slice(0, n), 2))  # [n, 2, H_cp]
        for group in range(1, self.groups):
            if group > 1:
                emb = cp.codec_embedding[group - 2](codes[-1])[:, None]  # [n, 1, H]
                hidden = cp(emb, group, self.cp_kv.view(slice(0, n), group + 1))
            codes.append(choose(cp.logits(hidden[:, -1], group), sub_rows))
        return torch.stack(codes, dim=1)

    @torch.inference_mode()
    def advance(self, frame: torch.Tensor) -> torch.Tensor:
        """Talker step on the frame just made (+ the next trailing text row); picks the next codebook 0.
        frame [n, 16] -> next codebook 0 [n]"""
        active = self.active()
        n = frame.shape[0]
        talker, cp = self.tts.talker, self.tts.code_predictor
        per_codebook = torch.cat((talker.codec_embedding(frame[:, :1]), cp.embed_codes(frame[:, 1:])), dim=1)
        embed = per_codebook.sum(1, keepdim=True)  # [n, 16, H] -> [n, 1, H]
        text_rows = torch.stack([self._trailing(i, embed) for i in range(n)])[:, None]  # [n, 1, H]
        occupied = torch.zeros(n, dtype=torch.bool, device=frame.device)
        occupied[active] = True
        pos = torch.where(occupied, self.lengths[:n], 0)  # empty rows write harmlessly at position 0
        t_used = int(pos.max()) + 1
        mask = (torch.arange(t_used, device=pos.device)[None] <= pos[:, None])[:, None, None]  # [n,1,1,T]
        hidden = talker(embed + text_rows, pos[:, None], self.talker_kv.view(slice(0, n), t_used), pos, mask)
        token = self._choose_c0(talker.logits(hidden[:, -1]), range(0, n))
        self.past_hidden[:n] = hidden[:, -1]
        self.last_token[:n] = token
        self.lengths[:n] += occupied.long()
        for i in active:
            self.settings[i].frames += 1
        return token

    def _trailing(self, row: int, like: torch.Tensor) -> torch.Tensor:
        s = self.settings[row]
        return s.trailing_row() if s else torch.zeros_like(like[0, 0])
