"""Qwen3-style transformer pieces shared by the talker and the code predictor.

RMSNorm, 1-D rotary embedding (rotate-half), grouped-query attention with per-head q/k RMSNorm and
SDPA, SwiGLU MLP, and the pre-norm decoder layer. Parameter names follow the official checkpoint
(`self_attn.q_proj`, `mlp.gate_proj`, `input_layernorm`, ...) so weights load unchanged.

Attention reads and writes an explicit `LayerKV` (one layer's slice of a `KVCache`); the module
itself keeps no per-request state. After loading and placing the weights, `DecoderStack.prepare()`
swaps the projections for `InferenceLinear`s: q/k/v and gate/up fused into single matrices (one matmul
instead of three or two; the same numbers bit for bit), pre-packed where that is faster.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import TransformerConfig
from .kv_cache import LayerKV
from .linear import InferenceLinear


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


class Rotary(nn.Module):
    """cos/sin tables for 1-D RoPE, computed in fp32 and cast to the activation dtype.

    The inverse frequencies are derived on first use per device (no buffer), so the stacks can be
    built on the meta device and filled straight from the checkpoint.
    """

    def __init__(self, head_dim: int, theta: float):
        super().__init__()
        self.head_dim, self.theta = head_dim, theta
        self._inv_freq: dict[torch.device, torch.Tensor] = {}

    def inv_freq(self, device: torch.device) -> torch.Tensor:
        if device not in self._inv_freq:
            exponents = torch.arange(0, self.head_dim, 2, dtype=torch.int64, device=device).float() / self.head_dim
            self._inv_freq[device] = 1.0 / (self.theta**exponents)
        return self._inv_freq[device]

    def forward(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        # positions [B, S] int64 -> cos, sin [B, 1, S, head_dim]
        freqs = positions.float()[..., None] * self.inv_freq(positions.device)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype)[:, None], emb.sin().to(dtype)[:, None]


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return x * cos + rotate_half(x) * sin


class Attention(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.n_heads, self.n_kv, self.head_dim = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        h = cfg.hidden_size
        self.q_proj = nn.Linear(h, self.n_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(h, self.n_kv * self.head_dim, bias=False)
        self.v_proj = nn.Linear(h, self.n_kv * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, h, bias=False)
        self.q_norm = RMSNorm(self.head_dim, cfg.rms_norm_eps)
        self.k_norm = RMSNorm(self.head_dim, cfg.rms_norm_eps)
        self.qkv: InferenceLinear | None = None

    def prepare(self) -> None:
        """One [(heads + 2 kv_heads) * D, H] matrix for q/k/v, and a prepared output projection."""
        self.qkv = InferenceLinear(torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight]))
        self.out = InferenceLinear(self.o_proj.weight)
        del self.q_proj, self.k_proj, self.v_proj, self.o_proj

    def _project(self, x: torch.Tensor):
        if self.qkv is None:
            return self.q_proj(x), self.k_proj(x), self.v_proj(x)
        d = self.head_dim
        return self.qkv(x).split([self.n_heads * d, self.n_kv * d, self.n_kv * d], dim=-1)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        kv: LayerKV,
        write_pos: torch.Tensor,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        # x [B, S, H]; write_pos [B, S] cache positions of the new tokens; mask [B, 1, S, T] bool or None
        # (None = plain causal over a cache that holds exactly these S tokens).
        b, s, _ = x.shape
        q, k, v = self._project(x)
        q = self.q_norm(q.reshape(b, s, self.n_heads, self.head_dim)).transpose(1, 2)
        k = self.k_norm(k.reshape(b, s, self.n_kv, self.head_dim)).transpose(1, 2)
        v = v.reshape(b, s, self.n_kv, self.head_dim).transpose(1, 2)
        cos, sin = rope
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)  # [B, heads, S, D]
        keys, values = kv.write(k, v, write_pos)  # [B, kv_heads, T, D]
        out = F.scaled_dot_product_attention(
            q, keys, values, attn_mask=mask, is_causal=mask is None and s > 1, enable_gqa=True
        )
        out = out.transpose(1, 2).reshape(b, s, self.n_heads * self.head_dim)
        return self.o_proj(out) if self.qkv is None else self.out(out)


class MLP(nn.Module):
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
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg.hidden_size, cfg.intermediate_size)

    def forward(self, x, rope, kv: LayerKV, write_pos, mask):
        x = x + self.self_attn(self.input_layernorm(x), rope, kv, write_pos, mask)
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

    def forward(self, x, positions, cache, write_pos, mask):
        # x [B, S, H]; positions [B, S] rope positions; cache: KVCache (one LayerKV per layer)
        rope = self.rotary(positions, x.dtype)
        for layer, kv in zip(self.layers, cache.layers(), strict=True):
            x = layer(x, rope, kv, write_pos, mask)
        return self.norm(x)
