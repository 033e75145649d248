"""CodecDecoder: checkpoint names, one-pass reference, streaming == whole, state rows, bf16.

The reference decoder below is written independently of the streaming code, directly from the official
algorithm (left zero-padded convs, full transposed convs trimmed on the right, dense attention with the
72-frame sliding-window mask at positions 0..T-1), on the same weights.
"""

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from makima_tts.config import CodecDecoderConfig
from makima_tts.model.codec import CodecDecoder

CFG = CodecDecoderConfig(
    codebook_size=64, codebook_dim=16, latent_dim=16, hidden_size=16, intermediate_size=32,
    num_attention_heads=2, num_key_value_heads=1, head_dim=8, num_hidden_layers=2, sliding_window=72,
    upsample_rates=(8, 5, 4, 3), upsampling_ratios=(2, 2), decoder_dim=32, num_quantizers=16,
)


def randomize_(module: torch.nn.Module, seed: int) -> None:
    """Random values everywhere, including the params the official init leaves constant."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("cluster_usage"):
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
            elif name.endswith("embedding_sum"):
                p.copy_(torch.randn(p.shape, generator=g))
            elif name.endswith((".alpha", ".beta")):
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
            elif name.endswith((".scale", ".gamma")):
                p.copy_(0.1 + 0.4 * torch.rand(p.shape, generator=g))
            elif p.dim() == 1:
                base = 1.0 if "norm" in name and name.endswith("weight") else 0.0
                p.copy_(base + 0.1 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p[0].numel() if not isinstance(_owner(module, name), torch.nn.ConvTranspose1d) else (
                    p.shape[0] * p.shape[2] / 2)
                p.copy_(0.6 * torch.randn(p.shape, generator=g) / math.sqrt(fan_in))


def _owner(module, param_name):
    return module.get_submodule(param_name.rsplit(".", 1)[0])


def make_codec(seed=0, **overrides) -> CodecDecoder:
    cfg = CodecDecoderConfig(**{**CFG.__dict__, **overrides})
    codec = CodecDecoder(cfg).eval()
    randomize_(codec, seed)
    return codec


@pytest.fixture(scope="module")
def codec():
    torch.manual_seed(0)
    return make_codec()


def random_codes(batch, frames, seed, size=CFG.codebook_size):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, size, (batch, CFG.num_quantizers, frames), generator=g)


# --------------------------------------------------------------------------- reference (one pass)
def _conv(m, x):
    c = m.conv
    return c(F.pad(x, ((c.kernel_size[0] - 1) * c.dilation[0], 0)))


def _tconv(m, x):
    c = m.conv
    y = c(x)
    trim = c.kernel_size[0] - c.stride[0]
    return y[..., : y.shape[-1] - trim]


def _snake(m, x):
    return x + torch.sin(x * m.alpha.exp()[:, None]) ** 2 / (m.beta.exp()[:, None] + 1e-9)


def _rms(m, x):
    return m.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + m.eps))


def _transformer(tr, x, cfg):
    t = x.shape[1]
    h = tr.input_proj(x)
    inv = 1.0 / cfg.rope_theta ** (torch.arange(0, cfg.head_dim, 2).float() / cfg.head_dim)
    ang = torch.arange(t).float()[:, None] * inv
    cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()

    def rope(z):
        z1, z2 = z[..., : cfg.head_dim // 2], z[..., cfg.head_dim // 2 :]
        return z * cos + torch.cat([-z2, z1], -1) * sin

    i, j = torch.arange(t)[:, None], torch.arange(t)[None, :]
    bias = torch.where((j <= i) & (j > i - cfg.sliding_window), 0.0, float("-inf"))
    rep = cfg.num_attention_heads // cfg.num_key_value_heads
    for layer in tr.layers:
        a = layer.self_attn
        z = _rms(layer.input_layernorm, h)
        q = rope(a.q_proj(z).view(1, t, -1, cfg.head_dim).transpose(1, 2))
        k = rope(a.k_proj(z).view(1, t, -1, cfg.head_dim).transpose(1, 2)).repeat_interleave(rep, 1)
        v = a.v_proj(z).view(1, t, -1, cfg.head_dim).transpose(1, 2).repeat_interleave(rep, 1)
        w = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(cfg.head_dim) + bias, -1)
        h = h + layer.self_attn_layer_scale.scale * a.o_proj((w @ v).transpose(1, 2).reshape(1, t, -1))
        z = _rms(layer.post_attention_layernorm, h)
        mlp = layer.mlp
        h = h + layer.mlp_layer_scale.scale * mlp.down_proj(F.silu(mlp.gate_proj(z)) * mlp.up_proj(z))
    return tr.output_proj(_rms(tr.norm, h))


@torch.no_grad()
def reference_decode(codec: CodecDecoder, codes: torch.Tensor) -> torch.Tensor:
    """codes [1, Q, T] -> [T * 1920], the official single-pass decode."""
    codes = codes.clamp(min=0)

    def rvq(m, c):
        vecs = [F.embedding(c[:, i], lay._codebook.embedding_sum / lay._codebook.cluster_usage.clamp(min=1e-5)[:, None])
                for i, lay in enumerate(m.vq.layers)]
        return m.output_proj(sum(vecs).transpose(1, 2))

    h = rvq(codec.quantizer.rvq_first, codes[:, :1]) + rvq(codec.quantizer.rvq_rest, codes[:, 1:])
    h = _conv(codec.pre_conv, h)
    h = _transformer(codec.pre_transformer, h.transpose(1, 2), codec.cfg).transpose(1, 2)
    for tconv, nx in codec.upsample:
        h = _tconv(tconv, h)
        z = nx.pwconv2(F.gelu(nx.pwconv1(nx.norm(_conv(nx.dwconv, h).transpose(1, 2)))))
        h = h + (nx.gamma * z).transpose(1, 2)
    h = _conv(codec.decoder[0], h)
    for block in codec.decoder[1:-2]:
        h = _tconv(block.block[1], _snake(block.block[0], h))
        for unit in block.block[2:]:
            h = h + _conv(unit.conv2, _snake(unit.act2, _conv(unit.conv1, _snake(unit.act1, h))))
    h = _conv(codec.decoder[-1], _snake(codec.decoder[-2], h))
    return h.clamp(-1, 1)[0, 0]


def stream(codec, codes, sizes, state=None):
    state = state or codec.new_state(codes.shape[0])
    outs, start = [], 0
    for n in sizes:
        outs.append(codec.decode_step(codes[:, :, start : start + n], state))
        start += n
    assert start == codes.shape[2]
    return torch.cat(outs, dim=1)


def random_sizes(total, seed, high=17):
    g = torch.Generator().manual_seed(seed)
    sizes = []
    while sum(sizes) < total:
        sizes.append(min(int(torch.randint(1, high, (1,), generator=g)), total - sum(sizes)))
    return sizes


# --------------------------------------------------------------------------- tests
def test_parameter_names_are_the_checkpoint_keys(codec):
    q, layers, rates = CFG.num_quantizers, CFG.num_hidden_layers, CFG.upsample_rates
    expected = set()
    for part, n in (("rvq_first", 1), ("rvq_rest", q - 1)):
        expected |= {f"quantizer.{part}.input_proj.weight", f"quantizer.{part}.output_proj.weight"}
        for i in range(n):
            expected |= {f"quantizer.{part}.vq.layers.{i}._codebook.{p}" for p in ("embedding_sum", "cluster_usage")}
    expected |= {"pre_conv.conv.weight", "pre_conv.conv.bias", "pre_transformer.norm.weight"}
    expected |= {f"pre_transformer.{p}.{w}" for p in ("input_proj", "output_proj") for w in ("weight", "bias")}
    per_layer = ["input_layernorm.weight", "post_attention_layernorm.weight", "self_attn_layer_scale.scale",
                 "mlp_layer_scale.scale"] + [f"self_attn.{p}_proj.weight" for p in "qkvo"] + [
                 f"mlp.{p}_proj.weight" for p in ("gate", "up", "down")]
    expected |= {f"pre_transformer.layers.{i}.{p}" for i in range(layers) for p in per_layer}
    for s in range(len(CFG.upsampling_ratios)):
        expected |= {f"upsample.{s}.0.conv.weight", f"upsample.{s}.0.conv.bias", f"upsample.{s}.1.gamma"}
        expected |= {f"upsample.{s}.1.{p}.{w}" for p in ("dwconv.conv", "norm", "pwconv1", "pwconv2")
                     for w in ("weight", "bias")}
    conv = ("weight", "bias")
    expected |= {f"decoder.0.conv.{w}" for w in conv} | {f"decoder.{len(rates) + 2}.conv.{w}" for w in conv}
    expected |= {f"decoder.{len(rates) + 1}.{p}" for p in ("alpha", "beta")}
    for b in range(1, len(rates) + 1):
        expected |= {f"decoder.{b}.block.0.{p}" for p in ("alpha", "beta")}
        expected |= {f"decoder.{b}.block.1.conv.{w}" for w in conv}
        for u in (2, 3, 4):
            expected |= {f"decoder.{b}.block.{u}.{a}.{p}" for a in ("act1", "act2") for p in ("alpha", "beta")}
            expected |= {f"decoder.{b}.block.{u}.{c}.conv.{w}" for c in ("conv1", "conv2") for w in conv}
    sd = codec.state_dict()
    assert set(sd) == expected  # nothing missing, no extra (persistent) buffers
    assert sd["decoder.1.block.1.conv.weight"].shape == (32, 16, 16)  # ConvTranspose1d [in, out, 2r]
    assert sd["quantizer.rvq_rest.vq.layers.0._codebook.embedding_sum"].shape == (64, 8)
    result = CodecDecoder(CFG).load_state_dict(sd, strict=True)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert codec.frame_samples == 1920


@pytest.mark.parametrize("frames", [1, 7, 73, 150])
def test_decode_matches_one_pass_reference(codec, frames):
    codes = random_codes(1, frames, seed=frames)
    ref = reference_decode(codec, codes)
    out = codec.decode(codes, frames_per_step=frames)[0]
    assert out.dtype == torch.float32 and out.shape == (frames * 1920,)
    assert ref.pow(2).mean().sqrt() > 0.02 and (ref.abs() == 1).float().mean() < 0.01  # real signal, not clipped
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(codec.decode(codes, frames_per_step=64)[0], ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("frames", [1, 2, 7, 73, 150, 300])
def test_streaming_equals_whole(codec, frames):
    codes = random_codes(2, frames, seed=100 + frames)
    whole = codec.decode(codes, frames_per_step=frames)
    chunkings = [[1] * frames, random_sizes(frames, seed=frames), random_sizes(frames, seed=frames + 1, high=80)]
    for sizes in chunkings:
        torch.testing.assert_close(stream(codec, codes, sizes), whole, atol=1e-5, rtol=0)
    assert (whole[0] - whole[1]).abs().max() > 1e-2  # rows carry different streams


def test_output_depends_causally_and_far_through_attention(codec):
    codes = random_codes(1, 120, seed=5)
    changed = codes.clone()
    changed[:, :, 10] = (changed[:, :, 10] + 1) % CFG.codebook_size
    a, b = codec.decode(codes)[0], codec.decode(changed)[0]
    torch.testing.assert_close(a[: 10 * 1920], b[: 10 * 1920], atol=1e-6, rtol=0)
    assert (a[10 * 1920 : 11 * 1920] - b[10 * 1920 : 11 * 1920]).abs().max() > 1e-3
    assert (a[60 * 1920 : 61 * 1920] - b[60 * 1920 : 61 * 1920]).abs().max() > 1e-6  # reached via attention only


def test_attention_window_is_72_frames_including_the_current_one():
    codec = make_codec(seed=3, num_hidden_layers=1)
    tr = codec.pre_transformer
    x = torch.randn(1, 100, CFG.latent_dim)
    y = x.clone()
    y[:, 0] += 1.0
    with torch.inference_mode():
        ox, oy = (tr(z, s.pos, s.keys, s.values) for z, s in ((x, codec.new_state(1)), (y, codec.new_state(1))))
    diff = (ox - oy).abs().amax(-1)[0]
    assert diff[71] > 1e-4 and diff[1:72].min() > 0  # frames 1..71 still see frame 0
    assert diff[72:].max() == 0  # frame 72 and later do not


def test_negative_codes_are_clamped_to_zero(codec):
    codes = random_codes(1, 5, seed=9)
    codes[:, 3, 2] = 0
    neg = codes.clone()
    neg[:, 3, 2] = -1
    torch.testing.assert_close(codec.decode(neg), codec.decode(codes), atol=0, rtol=0)


def test_bad_shapes_raise(codec):
    state = codec.new_state(2)
    with pytest.raises(ValueError):
        codec.decode_step(torch.zeros(2, 15, 1, dtype=torch.long), state)
    with pytest.raises(ValueError):
        codec.decode_step(torch.zeros(1, 16, 1, dtype=torch.long), state)


def test_reset_rows_starts_a_fresh_stream(codec):
    first, second = random_codes(3, 30, seed=11), random_codes(3, 20, seed=12)
    state = codec.new_state(3)
    stream(codec, first, [7, 23], state)
    state.reset_rows([1])
    out = stream(codec, second, [1, 4, 15], state)
    torch.testing.assert_close(out[1], codec.decode(second[1:2])[0], atol=1e-5, rtol=0)
    both = codec.decode(torch.cat([first, second], dim=2))
    torch.testing.assert_close(out[[0, 2]], both[[0, 2], 30 * 1920 :], atol=1e-5, rtol=0)
    assert state.pos.tolist() == [50, 20, 50]


def test_primed_row_continues_the_reference_exactly(codec):
    ref = random_codes(1, 38, seed=21)[0].T  # [T_ref, Q], as a voice prompt stores it
    gen = random_codes(1, 25, seed=22)
    primed = codec.prime(ref)
    state = codec.new_state(3)
    others = random_codes(3, 9, seed=23)
    stream(codec, others, [9], state)  # rows 0 and 1 are mid-stream
    state.copy_row_from(2, primed, 0)
    out = stream(codec, gen.expand(3, -1, -1).contiguous(), [1, 2, 22], state)
    full = codec.decode(torch.cat([ref.T[None], gen], dim=2))[0]
    torch.testing.assert_close(out[2], full[38 * 1920 :], atol=1e-5, rtol=0)
    continued = codec.decode(torch.cat([others[:2], gen.expand(2, -1, -1)], dim=2))[:, 9 * 1920 :]
    torch.testing.assert_close(out[:2], continued, atol=1e-5, rtol=0)
    assert state.pos.tolist() == [34, 34, 63]


def test_bfloat16_runs_and_stays_close(codec):
    codes = random_codes(1, 20, seed=31)
    ref = codec.decode(codes)
    half = copy.deepcopy(codec).to(torch.bfloat16)
    whole = half.decode(codes)
    streamed = stream(half, codes, [1] * 20)
    state = half.new_state(1)
    assert state.conv[0].dtype == torch.bfloat16 and state.keys[0].dtype == torch.bfloat16
    for out in (whole, streamed):
        assert out.dtype == torch.float32 and torch.isfinite(out).all()
        assert (out - ref).abs().max() < 0.1 * ref.abs().max()
        assert torch.corrcoef(torch.stack([out[0], ref[0]]))[0, 1] > 0.99
