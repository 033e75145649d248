"""Transformer pieces shared by the talker, the code predictor and the codec decoder's transformer.

RMSNorm, one 1-D rotary embedding (rotate-half), one grouped-query `Attention` (optional per-head q/k
RMSNorm, SDPA), the SwiGLU `MLP`, and the talker/predictor's pre-norm `DecoderLayer`/`DecoderStack`.
Parameter names follow the official checkpoints (`self_attn.q_proj`, `mlp.gate_proj`,
`input_layernorm`, ...) so weights load unchanged.

Attention keeps no per-request state: the cache object it is given stores the new keys/values and
attends (`attend`). `kv_cache.LayerKV` (talker, predictor) shows every position up to `t_used`;
`kv_cache.WindowKV` (codec) is the sliding-window option, the last `window - 1` keys plus the new ones;
`kv_cache.SegmentsKV` (batched prefill) attends each packed prompt over its own cache row. After loading and placing the weights, `DecoderStack.prepare()`
swaps the projections for `InferenceLinear`s: q/k/v and gate/up fused into single matrices (one matmul
instead of three or two; the same numbers bit for bit), pre-packed where that is faster.

Layouts: activations [B, S, hidden]; q [B, heads, S, D]; keys/values [B, kv_heads, T, D] (GQA: each kv
head serves heads / kv_heads query heads); cos/sin broadcastable to [B, heads, S, D].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import TransformerConfig
from .kv_cache import KVView, LayerKV, PackedView, SegmentsKV, WindowKV
from .linear import InferenceLinear


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The official norm (fp32 statistics, cast back, then the weight) in two ops; bit-identical.
        return self.weight * F.rms_norm(x, (x.shape[-1],), eps=self.eps)


class Rotary(nn.Module):
    """1-D RoPE angles `position * inv_freq`, inv_freq = theta^(-2i/D) in fp32, cos/sin cast to the
    activation dtype (never a buffer that `.to(bfloat16)` would round, as the official keeps it fp32).

    Two ways to get cos/sin, each kept numerically as the model always had it:
    - `tables`/`forward` (talker, code predictor): tables for positions 0..n-1 kept per (device, dtype),
      doubling when a longer one is needed; a lookup is one slice or one gather.
    - `at(positions)` (codec): computed for exactly the given per-row positions, nothing kept (its
      positions grow without bound over a stream).
    Nothing is a buffer, so the stacks can be built on the meta device and filled from the checkpoint.
    """

    def __init__(self, head_dim: int, theta: float):
        super().__init__()
        self.head_dim, self.theta = head_dim, theta
        self._tables: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    def _angles(self, positions: torch.Tensor) -> torch.Tensor:
        # positions [...] int -> angles [..., head_dim] (the half-dim frequencies twice, rotate-half layout)
        exponents = torch.arange(0, self.head_dim, 2, dtype=torch.int64, device=positions.device).float() / self.head_dim
        freqs = positions.float()[..., None] * (1.0 / (self.theta**exponents))  # [..., head_dim / 2]
        return torch.cat((freqs, freqs), dim=-1)

    def tables(self, n: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        # -> cos, sin [>= n, head_dim]
        key = (device, dtype)
        cached = self._tables.get(key)
        if cached is None or cached[0].shape[0] < n:
            size = max(n, 64 if cached is None else 2 * cached[0].shape[0])
            emb = self._angles(torch.arange(size, device=device))
            cached = self._tables[key] = emb.cos().to(dtype), emb.sin().to(dtype)
        return cached

    def forward(
        self, positions: torch.Tensor | range, limit: int, dtype: torch.dtype, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """positions: a `range` shared by every row, or a LongTensor [B, S] of per-row positions, all
        below `limit` (no device read needed). -> cos, sin broadcastable to [B, heads, S, head_dim]"""
        cos, sin = self.tables(limit, device, dtype)
        if isinstance(positions, range):
            return cos[positions.start : positions.stop], sin[positions.start : positions.stop]
        return cos[positions][:, None], sin[positions][:, None]

    def at(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        # positions [B, S] -> cos, sin [B, 1, S, head_dim]
        emb = self._angles(positions)
        return emb.cos().to(dtype)[:, None], emb.sin().to(dtype)[:, None]


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return x * cos + rotate_half(x) * sin


class Attention(nn.Module):
    """Grouped-query attention, no bias, RoPE on q and k, over the given cache (see the module docstring).

    `qk_norm_eps`: per-head RMSNorm of q and k before RoPE (`q_norm`, `k_norm`: Qwen3's talker and code
    predictor); None for none (the codec), which also leaves those parameters out of the state dict.
    """

    def __init__(self, hidden: int, heads: int, kv_heads: int, head_dim: int, qk_norm_eps: float | None = None):
        super().__init__()
        self.n_heads, self.n_kv, self.head_dim = heads, kv_heads, head_dim
        self.q_proj = nn.Linear(hidden, heads * head_dim, bias=False)
        self.k_proj = nn.Linear(hidden, kv_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(hidden, kv_heads * head_dim, bias=False)
        self.o_proj = nn.Linear(heads * head_dim, hidden, bias=False)
        self.qk_norm = qk_norm_eps is not None
        if self.qk_norm:
            self.q_norm = RMSNorm(head_dim, qk_norm_eps)
            self.k_norm = RMSNorm(head_dim, qk_norm_eps)
        self.qkv: InferenceLinear | None = None

    def prepare(self) -> None:
        """One [(heads + 2 kv_heads) * D, H] matrix for q/k/v, a prepared output projection, and (qk-norm)
        the q and k norm weights as one [heads + kv_heads, D] table, so q and k are normed together."""
        self.qkv = InferenceLinear(torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight]))
        self.out = InferenceLinear(self.o_proj.weight)
        if self.qk_norm:
            self.qk_norm_weight = torch.cat(
                [self.q_norm.weight.detach().expand(self.n_heads, -1), self.k_norm.weight.detach().expand(self.n_kv, -1)]
            )
        del self.q_proj, self.k_proj, self.v_proj, self.o_proj

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # x [B, S, H] -> q|k (normed if qk-norm), not rotated [B, S, heads + kv_heads, D]; v [B, S, kv_heads, D]
        b, s, _ = x.shape
        d, qk_heads = self.head_dim, self.n_heads + self.n_kv
        if self.qkv is None:
            q = self.q_proj(x).view(b, s, self.n_heads, d)
            k = self.k_proj(x).view(b, s, self.n_kv, d)
            if self.qk_norm:
                q, k = self.q_norm(q), self.k_norm(k)
            return torch.cat((q, k), dim=2), self.v_proj(x).view(b, s, self.n_kv, d)
        qk, v = self.qkv(x).split([qk_heads * d, self.n_kv * d], dim=-1)
        qk = qk.view(b, s, qk_heads, d)
        if self.qk_norm:
            qk = self.qk_norm_weight * F.rms_norm(qk, (d,), eps=self.q_norm.eps)
        return qk, v.view(b, s, self.n_kv, d)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], kv: LayerKV | WindowKV | SegmentsKV) -> torch.Tensor:
        # x [B, S, H] -> [B, S, H]; kv stores the new keys/values and attends (kv_cache.py)
        b, s, _ = x.shape
        qk, v = self._qkv(x)
        qk = apply_rotary(qk.transpose(1, 2), *rope)  # [B, heads + kv_heads, S, D]
        q, k = qk.split([self.n_heads, self.n_kv], dim=1)
        out = kv.attend(q, k, v.transpose(1, 2))  # [B, heads, S, D]
        out = out.transpose(1, 2).reshape(b, s, self.n_heads * self.head_dim)
        return self.o_proj(out) if self.qkv is None else self.out(out)


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x)), [..., hidden] -> [..., hidden]; gate|up fused by `prepare`."""

    def __init__(self, hidden: int, intermediate: int):
        super().__init__()
        self.gate_proj = nn.Linear(hidden, intermediate, bias=False)
        self.up_proj = nn.Linear(hidden, intermediate, bias=False)
        self.down_proj = nn.Linear(intermediate, hidden, bias=False)
        self.gate_up: InferenceLinear | None = None

    def prepare(self) -> None:
        self.gate_up = InferenceLinear(torch.cat([self.gate_proj.weight, self.up_proj.weight]))
        self.down = InferenceLinear(self.down_proj.weight)
        del self.gate_proj, self.up_proj, self.down_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate_up is None:
            return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class DecoderLayer(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(
            cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim, cfg.rms_norm_eps
        )
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg.hidden_size, cfg.intermediate_size)

    def forward(self, x, rope, kv: LayerKV):
        x = x + self.self_attn(self.input_layernorm(x), rope, kv)
        return x + self.mlp(self.post_attention_layernorm(x))


class DecoderStack(nn.Module):
    """`layers.{i}` + final `norm`: embeddings in, post-norm hidden states out."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.rotary = Rotary(cfg.head_dim, cfg.rope_theta)

    def prepare(self) -> None:
        for layer in self.layers:
            layer.self_attn.prepare()
            layer.mlp.prepare()

    def forward(self, x, positions, cache: KVView | PackedView, write_pos, mask):
        # x [B, S, H] -> [B, S, H]; positions: range or [B, S] rope positions (below cache.t_used);
        # write_pos, mask: see `KVView.layers`
        rope = self.rotary(positions, cache.t_used, x.dtype, x.device)
        for layer, kv in zip(self.layers, cache.layers(write_pos, mask), strict=True):
            x = layer(x, rope, kv)
        return self.norm(x)
