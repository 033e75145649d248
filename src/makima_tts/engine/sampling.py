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
    """Per-row settings as tensors [n] (n = rows in the batch), plus what decides control flow.

    Eager steps pass host-side `k_max`/`any_top_p`/`any_draw` (so choosing needs no device reads) and
    the rows' generators, and noise is drawn while choosing. The static (CUDA-graph) step passes the
    worst case (`k_max` = vocabulary, top-p always evaluated, `any_draw` True) and `noise` drawn before
    the frame; both give the same tokens.
    """

    temperature: torch.Tensor  # float32
    top_k: torch.Tensor  # int64, 0 = off
    top_p: torch.Tensor  # float32, 1.0 = off
    draw: torch.Tensor  # bool: draw (True) or argmax (False)
    k_max: int  # top-k is computed over this many candidates (0 = top-k off everywhere)
    any_top_p: bool
    any_draw: bool
    generators: list[torch.Generator | None] | None = None  # eager: per row, None for argmax rows
    noise: torch.Tensor | None = None  # static: [n, V] Exponential(1) noise (rows that draw)


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


def draw_noise(like: torch.Tensor, generators: list[torch.Generator | None]) -> torch.Tensor:
    """Exponential(1) noise [n, V] from each row's generator (one draw of V per row, as
    `torch.multinomial` makes); ones for rows without one."""
    noise = torch.ones_like(like)
    for i, generator in enumerate(generators):
        if generator is not None:
            noise[i : i + 1].exponential_(1, generator=generator)
    return noise


def choose(scores: torch.Tensor, rows: RowSampling) -> torch.Tensor:
    """One id per row: argmax for greedy rows, a multinomial draw for sampling rows. -> [n] int64"""
    picked = scores.argmax(dim=-1)
    if not rows.any_draw:
        return picked
    probs = warp(scores, rows).softmax(dim=-1)
    noise = rows.noise if rows.noise is not None else draw_noise(probs, rows.generators)
    return torch.where(rows.draw, (probs / noise).argmax(dim=-1), picked)


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
