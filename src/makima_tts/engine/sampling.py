"""Token selection in the official (HF 4.57 `generate`) order, as pure tensor code over a batch of rows.

Talker (codebook 0): repetition penalty over the codes generated so far -> end-of-speech blocked until
`min_new_tokens` -> control ids suppressed -> [sampling: temperature -> top-k -> top-p -> softmax ->
multinomial] or argmax. Code predictor (codebooks 1..15): the same without the first three.

Each row may carry its own settings and its own `torch.Generator`. `torch.multinomial(p, 1)` is
`argmax(p / Exponential(1) noise)` with the noise drawn from the generator, so drawing that noise per
row from the row's generator reproduces the official seeded run exactly while rows stay independent.
All logits are float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

NEG_INF = float("-inf")


@dataclass
class RowSampling:
    """Per-row settings, tensors [n] (n = rows in the batch), plus host-side copies of what decides
    control flow, so choosing a token needs no device-to-host reads."""

    temperature: torch.Tensor  # float32
    top_k: torch.Tensor  # int64, 0 = off
    top_p: torch.Tensor  # float32, 1.0 = off
    sampling: list[bool]  # per row: draw (True) or argmax (False)
    generators: list[torch.Generator | None]
    k_max: int  # largest top_k among the rows (0 = top-k off everywhere)
    any_top_p: bool


def repetition_penalty(scores: torch.Tensor, seen: torch.Tensor, penalty: torch.Tensor) -> torch.Tensor:
    # scores [n, V]; seen [n, V] bool (codes generated so far); penalty [n]
    p = penalty[:, None]
    penalised = torch.where(scores < 0, scores * p, scores / p)
    return torch.where(seen, penalised, scores)


def warp(scores: torch.Tensor, rows: RowSampling) -> torch.Tensor:
    """Temperature, then top-k (ties at the k-th value are kept), then top-p (at least one token kept)."""
    scores = scores / rows.temperature[:, None]
    k_max = rows.k_max
    if k_max > 0:
        k_max = min(k_max, scores.shape[-1])
        top = torch.topk(scores, k_max, dim=-1).values  # [n, k_max], descending
        k = rows.top_k.clamp(1, k_max)
        kth = top.gather(1, (k - 1)[:, None])
        kth = torch.where(rows.top_k[:, None] > 0, kth, torch.full_like(kth, NEG_INF))
        scores = scores.masked_fill(scores < kth, NEG_INF)
    if rows.any_top_p:
        sorted_scores, order = torch.sort(scores, descending=False)
        cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
        remove_sorted = cumulative <= (1 - rows.top_p[:, None])
        remove_sorted[:, -1] = False
        remove = remove_sorted.scatter(1, order, remove_sorted)
        remove &= (rows.top_p < 1.0)[:, None]
        scores = scores.masked_fill(remove, NEG_INF)
    return scores


def choose(scores: torch.Tensor, rows: RowSampling) -> torch.Tensor:
    """One id per row: argmax for greedy rows, a multinomial draw for sampling rows. -> [n] int64"""
    picked = scores.argmax(dim=-1)
    sampling = rows.sampling
    if any(sampling):
        warped = warp(scores, rows)
        probs = warped.softmax(dim=-1)
        for i, draw in enumerate(sampling):
            if draw:
                noise = torch.empty_like(probs[i : i + 1]).exponential_(1, generator=rows.generators[i])
                picked[i] = (probs[i : i + 1] / noise).argmax(dim=-1)[0]
    return picked


def choose_codebook0(
    logits: torch.Tensor,
    rows: RowSampling,
    seen: torch.Tensor,
    penalty: torch.Tensor,
    eos_blocked: torch.Tensor,
    eos_mask: torch.Tensor,
    suppress: torch.Tensor,
) -> torch.Tensor:
    """Talker token: logits [n, V] float32; seen [n, V] bool; penalty [n]; eos_blocked [n] bool
    (fewer than min_new_tokens generated, or EOS disabled); eos_mask [V] bool (True at the end id);
    suppress [V] bool. -> [n] int64"""
    scores = repetition_penalty(logits, seen, penalty)
    scores = scores.masked_fill(eos_blocked[:, None] & eos_mask, NEG_INF)
    scores = scores.masked_fill(suppress, NEG_INF)
    return choose(scores, rows)
