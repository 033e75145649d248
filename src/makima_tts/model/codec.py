"""12Hz codec decoder (codes -> 24 kHz waveform) with exact streaming over an explicit `CodecState`.

Pipeline, per frame of `Q` codes (shapes for one call of `T` frames, `B` rows):
  codes [B, Q, T] --clamp>=0--> SplitRVQ [B, codebook_dim, T] --pre_conv (causal k3)--> [B, latent, T]
  --transformer (8 layers, sliding window 72, RoPE at absolute positions)--> [B, latent, T]
  --2x (transposed conv x2 + ConvNeXt)--> [B, latent, 4T] --SEANet (conv k7, 4 blocks with SnakeBeta and
  transposed convs x8 x5 x4 x3, SnakeBeta, conv k7)--> [B, 1, 1920 T] --clamp(-1, 1)--> float32 [B, 1920 T]

Streaming API (modules hold weights only; everything per stream lives in `CodecState`):
- `state = codec.new_state(batch)`: zeroed, preallocated state for `batch` rows (model dtype/device).
- `codec.decode_step(codes [B, Q, T], state) -> [B, T*1920]`: all rows advance by `T >= 1` frames in
  lockstep. Any grouping of frames into steps gives the same samples as one pass over the utterance.
- `codec.decode(codes) -> [B, T*1920]`: a whole utterance (fresh state, then steps of <= 100 frames).
- `state.reset_rows(rows)`: those rows start a new stream (zero history, position 0).
- ICL priming: the official decodes `ref_codes ++ generated` in one pass and cuts the reference audio.
  Prime a one-row state with `primed = codec.prime(ref_codes [T_ref, Q])` (output discarded), then
  `state.copy_row_from(row, primed, 0)` puts it into the engine's slot row; that row's next samples
  are exactly those that follow the reference in the one-pass decode.

Deliberate deviation: for more than 300 frames the official `chunked_decode` re-decodes 300-frame
chunks with only 25 frames of left context (RoPE positions restarting per chunk), which is not equal to
a full decode. We always produce the true full decode (positions 0..T-1), so we equal the official
exactly up to 300 frames and the full one-pass decode beyond.

State contents (`CodecState`): `conv[i]` one tensor per stateful conv layer (left input history of a
causal conv `[B, C_in, (k-1)*d]`, or bias-free overlap tail of a transposed conv `[B, C_out, k-s]`),
`keys[l]`/`values[l]` per transformer layer `[B, kv_heads, window-1, head_dim]` (post-RoPE, oldest
first; invalid while fewer frames have been seen, masked via `pos`), and `pos [B]` int64 frames seen.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import CodecDecoderConfig
from .codec_layers import CausalConv, CausalTransConv, ConvNeXtBlock, DecoderBlock, SnakeBeta, SplitRVQ
from .layers import MLP, RMSNorm, apply_rotary


@dataclass
class CodecState:
    conv: list[torch.Tensor]
    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    pos: torch.Tensor  # [B] int64

    @property
    def batch(self) -> int:
        return self.pos.shape[0]

    def _tensors(self) -> list[torch.Tensor]:
        return [*self.conv, *self.keys, *self.values, self.pos]

    @torch.inference_mode()
    def reset_rows(self, rows: Sequence[int] | torch.Tensor) -> None:
        """Zero the given rows: a new stream starts there from silence at position 0."""
        idx = torch.as_tensor(rows, dtype=torch.long, device=self.pos.device)
        for t in self._tensors():
            t.index_fill_(0, idx, 0)

    @torch.inference_mode()
    def copy_row_from(self, dst_row: int, src: CodecState, src_row: int = 0) -> None:
        """Overwrite row `dst_row` with row `src_row` of `src` (same model; e.g. a primed one-row state)."""
        for dst, s in zip(self._tensors(), src._tensors(), strict=True):
            dst[dst_row].copy_(s[src_row])


def rope_tables(positions: torch.Tensor, head_dim: int, theta: float, dtype: torch.dtype):
    """positions [B, T] -> cos, sin [B, 1, T, head_dim]. The inverse frequencies are made here in fp32
    (not kept as a buffer that `.to(bfloat16)` would round), as the official keeps them in fp32."""
    exponents = torch.arange(0, head_dim, 2, dtype=torch.int64, device=positions.device).float() / head_dim
    freqs = positions.float()[..., None] * (1.0 / theta**exponents)  # [B, T, head_dim / 2]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype)[:, None], emb.sin().to(dtype)[:, None]


class CodecAttention(nn.Module):
    """Causal sliding-window attention (no q/k norm, no bias) over the state's window cache."""

    def __init__(self, cfg: CodecDecoderConfig):
        super().__init__()
        self.n_heads, self.n_kv, self.head_dim = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        h = cfg.hidden_size
        self.q_proj = nn.Linear(h, self.n_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(h, self.n_kv * self.head_dim, bias=False)
        self.v_proj = nn.Linear(h, self.n_kv * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, h, bias=False)

    def forward(self, x, rope, cache_k: torch.Tensor, cache_v: torch.Tensor, mask: torch.Tensor):
        # x [B, T, H]; cache_* [B, kv, W-1, D] updated in place; mask [B, 1, T, W-1+T] bool
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.n_kv, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.n_kv, self.head_dim).transpose(1, 2)
        cos, sin = rope
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        keys = torch.cat([cache_k, k], dim=2)  # [B, kv, W-1+T, D]
        values = torch.cat([cache_v, v], dim=2)
        keep = cache_k.shape[2]
        cache_k.copy_(keys[:, :, -keep:])
        cache_v.copy_(values[:, :, -keep:])
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, enable_gqa=True)
        return self.o_proj(out.transpose(1, 2).reshape(b, t, self.n_heads * self.head_dim))


class LayerScale(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.scale = nn.Parameter(torch.full((dim,), 0.01))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x


class CodecTransformerLayer(nn.Module):
    def __init__(self, cfg: CodecDecoderConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = CodecAttention(cfg)
        self.self_attn_layer_scale = LayerScale(cfg.hidden_size)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg.hidden_size, cfg.intermediate_size)
        self.mlp_layer_scale = LayerScale(cfg.hidden_size)

    def forward(self, x, rope, cache_k, cache_v, mask):
        x = x + self.self_attn_layer_scale(self.self_attn(self.input_layernorm(x), rope, cache_k, cache_v, mask))
        return x + self.mlp_layer_scale(self.mlp(self.post_attention_layernorm(x)))


class CodecTransformer(nn.Module):
    """latent -> hidden -> layers -> RMSNorm -> latent; frame positions come from `state.pos`."""

    def __init__(self, cfg: CodecDecoderConfig):
        super().__init__()
        self.window = cfg.sliding_window
        self.input_proj = nn.Linear(cfg.latent_dim, cfg.hidden_size)
        self.layers = nn.ModuleList([CodecTransformerLayer(cfg) for _ in range(cfg.num_hidden_layers)])
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.output_proj = nn.Linear(cfg.hidden_size, cfg.latent_dim)
        self.head_dim, self.rope_theta = cfg.head_dim, cfg.rope_theta

    def forward(self, x: torch.Tensor, state: CodecState) -> torch.Tensor:
        # x [B, T, latent] -> [B, T, latent]
        t = x.shape[1]
        steps = torch.arange(t, device=x.device)
        positions = state.pos[:, None] + steps  # [B, T]
        # cached slot j (of W-1) holds absolute position pos-(W-1)+j, new frame i sits at slot W-1+i;
        # query i sees slots j with i <= j <= i+W-1 whose absolute position is >= 0
        past = self.window - 1
        slots = torch.arange(past + t, device=x.device)
        mask = (slots >= steps[:, None]) & (slots <= steps[:, None] + past)  # [T, W-1+T]
        mask = mask & (slots >= past - state.pos[:, None, None])  # [B, T, W-1+T]
        rope = rope_tables(positions, self.head_dim, self.rope_theta, x.dtype)
        h = self.input_proj(x)
        for layer, ck, cv in zip(self.layers, state.keys, state.values, strict=True):
            h = layer(h, rope, ck, cv, mask[:, None])
        return self.output_proj(self.norm(h))


class CodecDecoder(nn.Module):
    """The `decoder.*` half of `speech_tokenizer/model.safetensors` (load with strict=True)."""

    def __init__(self, cfg: CodecDecoderConfig):
        super().__init__()
        self.cfg = cfg
        self.frame_samples = math.prod(cfg.upsample_rates) * math.prod(cfg.upsampling_ratios)
        self.quantizer = SplitRVQ(cfg.num_quantizers, cfg.codebook_size, cfg.codebook_dim)
        self.pre_conv = CausalConv(cfg.codebook_dim, cfg.latent_dim, 3)
        self.pre_transformer = CodecTransformer(cfg)
        self.upsample = nn.ModuleList(
            nn.ModuleList([CausalTransConv(cfg.latent_dim, cfg.latent_dim, f, f), ConvNeXtBlock(cfg.latent_dim)])
            for f in cfg.upsampling_ratios
        )
        dims = [cfg.decoder_dim // 2**i for i in range(len(cfg.upsample_rates) + 1)]
        self.decoder = nn.ModuleList(
            [CausalConv(cfg.latent_dim, dims[0], 7)]
            + [DecoderBlock(dims[i], r) for i, r in enumerate(cfg.upsample_rates)]
            + [SnakeBeta(dims[-1]), CausalConv(dims[-1], 1, 7)]
        )
        self._slot_shapes: list[tuple[int, int]] = []
        for m in self.modules():
            if isinstance(m, (CausalConv, CausalTransConv)) and m.context > 0:
                m.slot = len(self._slot_shapes)
                self._slot_shapes.append(m.state_shape())

    def prepare(self) -> None:
        """Inference-ready convolutions (after loading and placing the weights)."""
        for m in self.modules():
            if isinstance(m, CausalConv):
                m.prepare()

    @property
    def _param(self) -> torch.Tensor:
        return self.pre_conv.conv.weight

    @torch.inference_mode()
    def new_state(self, batch: int, device=None, dtype=None) -> CodecState:
        device = device or self._param.device
        dtype = dtype or self._param.dtype
        cfg = self.cfg
        kv_shape = (batch, cfg.num_key_value_heads, cfg.sliding_window - 1, cfg.head_dim)
        return CodecState(
            conv=[torch.zeros(batch, c, n, device=device, dtype=dtype) for c, n in self._slot_shapes],
            keys=[torch.zeros(kv_shape, device=device, dtype=dtype) for _ in range(cfg.num_hidden_layers)],
            values=[torch.zeros(kv_shape, device=device, dtype=dtype) for _ in range(cfg.num_hidden_layers)],
            pos=torch.zeros(batch, dtype=torch.long, device=device),
        )

    @torch.inference_mode()
    def decode_step(self, codes: torch.Tensor, state: CodecState) -> torch.Tensor:
        """codes [B, Q, T] int -> float32 [B, T*frame_samples]; advances every row of `state` by T."""
        b, q, t = codes.shape
        if q != self.cfg.num_quantizers or b != state.batch or t < 1:
            raise ValueError(
                f"expected codes [{state.batch}, {self.cfg.num_quantizers}, T>=1], got {tuple(codes.shape)}"
            )
        h = self.quantizer(codes.to(state.pos.device).clamp(min=0))  # [B, codebook_dim, T]
        h = self.pre_conv(h, state)  # [B, latent, T]
        h = self.pre_transformer(h.transpose(1, 2), state).transpose(1, 2)
        for trans_conv, convnext in self.upsample:
            h = convnext(trans_conv(h, state), state)  # [B, latent, T*4] after both stages
        h = self.decoder[0](h, state)  # [B, decoder_dim, T*4]
        for block in self.decoder[1:-2]:
            h = block(h, state)  # channels halve, time x rate
        wav = self.decoder[-1](self.decoder[-2](h), state)  # [B, 1, T*frame_samples]
        state.pos += t
        return wav[:, 0].clamp(-1, 1).float()

    def decode(self, codes: torch.Tensor, frames_per_step: int = 100) -> torch.Tensor:
        """Whole utterances: codes [B, Q, T] -> [B, T*frame_samples] (steps bound memory; exact)."""
        state = self.new_state(codes.shape[0])
        if codes.shape[2] == 0:
            return torch.zeros(codes.shape[0], 0, device=state.pos.device)
        chunks = [self.decode_step(c, state) for c in codes.split(frames_per_step, dim=2)]
        return torch.cat(chunks, dim=1)

    def prime(self, ref_codes: torch.Tensor) -> CodecState:
        """A one-row state that has decoded `ref_codes` [T_ref, Q] (the ICL reference), output dropped."""
        state = self.new_state(1)
        self.decode_step(ref_codes.T[None], state)
        return state
