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

Files: `codec_state.py` (the state and its layout), `conv.py` (causal convs), `codec_layers.py` (blocks,
quantizer), `layers.py` (the attention, RoPE, RMSNorm and SwiGLU shared with the talker),
`kv_cache.py` (the sliding-window cache).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import CodecDecoderConfig
from .codec_layers import ConvNeXtBlock, DecoderBlock, SnakeBeta, SplitRVQ
from .codec_state import CodecState
from .conv import CausalConv, CausalTransConv
from .kv_cache import WindowKV, window_mask
from .layers import MLP, Attention, RMSNorm, Rotary

__all__ = ["CodecDecoder", "CodecState"]


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
        self.self_attn = Attention(cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim)
        self.self_attn_layer_scale = LayerScale(cfg.hidden_size)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg.hidden_size, cfg.intermediate_size)
        self.mlp_layer_scale = LayerScale(cfg.hidden_size)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], kv: WindowKV) -> torch.Tensor:
        x = x + self.self_attn_layer_scale(self.self_attn(self.input_layernorm(x), rope, kv))
        return x + self.mlp_layer_scale(self.mlp(self.post_attention_layernorm(x)))


class CodecTransformer(nn.Module):
    """latent -> hidden -> layers (no q/k norm, sliding window) -> RMSNorm -> latent, RoPE at absolute
    frame positions."""

    def __init__(self, cfg: CodecDecoderConfig):
        super().__init__()
        self.window = cfg.sliding_window
        self.input_proj = nn.Linear(cfg.latent_dim, cfg.hidden_size)
        self.layers = nn.ModuleList([CodecTransformerLayer(cfg) for _ in range(cfg.num_hidden_layers)])
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.output_proj = nn.Linear(cfg.hidden_size, cfg.latent_dim)
        self.rotary = Rotary(cfg.head_dim, cfg.rope_theta)

    def forward(
        self, x: torch.Tensor, pos: torch.Tensor, keys: list[torch.Tensor], values: list[torch.Tensor]
    ) -> torch.Tensor:
        # x [B, T, latent] -> [B, T, latent]; pos [B] frames seen; keys/values: the state's window caches
        t = x.shape[1]
        mask = window_mask(pos, t, self.window)  # [B, 1, T, W-1+T]
        rope = self.rotary.at(pos[:, None] + torch.arange(t, device=x.device), x.dtype)  # positions [B, T]
        h = self.input_proj(x)
        for layer, k, v in zip(self.layers, keys, values, strict=True):
            h = layer(h, rope, WindowKV(k, v, mask))
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

    def prepare(self) -> None:
        """Inference-ready convolutions (after loading and placing the weights). The transformer's
        projections stay `nn.Linear`, as they always were (its numbers unchanged)."""
        for m in self.modules():
            if isinstance(m, CausalConv):
                m.prepare()

    @property
    def _param(self) -> torch.Tensor:
        return self.pre_conv.conv.weight

    def conv_state_shapes(self) -> list[tuple[int, int]]:
        """(channels, length) of each `CodecState.conv` tensor, in the order `decode_step` uses them."""
        shapes = self.pre_conv.state_shapes()
        for _, convnext in self.upsample:  # the transposed convs have kernel == stride: no state
            shapes += convnext.state_shapes()
        shapes += self.decoder[0].state_shapes()
        for block in self.decoder[1:-2]:
            shapes += block.state_shapes()
        return shapes + self.decoder[-1].state_shapes()

    @torch.inference_mode()
    def new_state(self, batch: int, device=None, dtype=None) -> CodecState:
        cfg = self.cfg
        return CodecState.zeros(
            batch, self.conv_state_shapes(), cfg.num_hidden_layers,
            (cfg.num_key_value_heads, cfg.sliding_window - 1, cfg.head_dim),
            device or self._param.device, dtype or self._param.dtype,
        )

    @torch.inference_mode()
    def decode_step(self, codes: torch.Tensor, state: CodecState) -> torch.Tensor:
        """codes [B, Q, T] int -> float32 [B, T*frame_samples]; advances every row of `state` by T."""
        b, q, t = codes.shape
        if q != self.cfg.num_quantizers or b != state.batch or t < 1:
            raise ValueError(
                f"expected codes [{state.batch}, {self.cfg.num_quantizers}, T>=1], got {tuple(codes.shape)}"
            )
        conv = iter(state.conv)  # each stateful conv's tensor, in `conv_state_shapes()` order
        h = self.quantizer(codes.to(state.pos.device).clamp(min=0))  # [B, codebook_dim, T]
        h = self.pre_conv(h, next(conv))  # [B, latent, T]
        h = self.pre_transformer(h.transpose(1, 2), state.pos, state.keys, state.values).transpose(1, 2)
        for trans_conv, convnext in self.upsample:
            h = convnext(trans_conv(h), next(conv))  # [B, latent, T*4] after both stages
        h = self.decoder[0](h, next(conv))  # [B, decoder_dim, T*4]
        for block in self.decoder[1:-2]:
            h = block(h, [next(conv) for _ in range(block.n_states)])  # channels halve, time x rate
        wav = self.decoder[-1](self.decoder[-2](h), next(conv))  # [B, 1, T*frame_samples]
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
