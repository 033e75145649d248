"""The shared transformer pieces (`model/layers.py`): one Attention for the talker, code predictor and
codec, one RoPE.

The window option is checked against the codec's former attention (its own class until #17, restated
here), bit for bit; the qk-norm option and GQA against a dense reference written from the official
algorithm.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from makima_tts.model.kv_cache import KVCache, WindowKV, window_mask
from makima_tts.model.layers import Attention, Rotary, apply_rotary

HIDDEN, HEADS, KV_HEADS, D = 32, 4, 2, 8


def make_attention(qk_norm_eps=None, seed=0) -> Attention:
    torch.manual_seed(seed)
    attn = Attention(HIDDEN, HEADS, KV_HEADS, D, qk_norm_eps)
    with torch.no_grad():
        for p in attn.parameters():
            p.copy_(torch.randn(p.shape) / math.sqrt(p.shape[-1]) if p.dim() > 1 else 1 + 0.3 * torch.randn(p.shape))
    return attn


# ----------------------------------------------------------------------- the codec's former attention
def old_codec_rope(positions, theta, dtype):
    exponents = torch.arange(0, D, 2, dtype=torch.int64).float() / D
    freqs = positions.float()[..., None] * (1.0 / theta**exponents)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype)[:, None], emb.sin().to(dtype)[:, None]


def old_codec_attention(a: Attention, x, rope, cache_k, cache_v, mask):
    b, t, _ = x.shape
    q = a.q_proj(x).view(b, t, HEADS, D).transpose(1, 2)
    k = a.k_proj(x).view(b, t, KV_HEADS, D).transpose(1, 2)
    v = a.v_proj(x).view(b, t, KV_HEADS, D).transpose(1, 2)
    q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
    keys, values = torch.cat([cache_k, k], dim=2), torch.cat([cache_v, v], dim=2)
    keep = cache_k.shape[2]
    cache_k.copy_(keys[:, :, -keep:])
    cache_v.copy_(values[:, :, -keep:])
    out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, enable_gqa=True)
    return a.o_proj(out.transpose(1, 2).reshape(b, t, HEADS * D))


def old_codec_mask(pos, t, window):
    steps = torch.arange(t)
    past = window - 1
    slots = torch.arange(past + t)
    mask = (slots >= steps[:, None]) & (slots <= steps[:, None] + past)
    return (mask & (slots >= past - pos[:, None, None]))[:, None]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_window_option_is_the_former_codec_attention_bit_for_bit(dtype):
    attn = make_attention().to(dtype)
    rotary, window, theta = Rotary(D, 10000.0), 12, 10000.0
    torch.manual_seed(1)
    x = torch.randn(3, 40, HIDDEN, dtype=dtype)
    pos = torch.tensor([0, 5, 30])  # rows at different stream positions
    new_k, new_v = torch.zeros(3, KV_HEADS, window - 1, D, dtype=dtype), torch.zeros(3, KV_HEADS, window - 1, D, dtype=dtype)
    old_k, old_v = new_k.clone(), new_v.clone()
    start = 0
    with torch.inference_mode():
        for n in (1, 3, 11, 1, 24):  # chunks shorter and longer than the window
            chunk = x[:, start : start + n]
            positions = pos[:, None] + torch.arange(n)
            cos, sin = rotary.at(positions, dtype)
            old_cos, old_sin = old_codec_rope(positions, theta, dtype)
            assert torch.equal(cos, old_cos) and torch.equal(sin, old_sin)
            mask = window_mask(pos, n, window)
            assert torch.equal(mask, old_codec_mask(pos, n, window))
            got = attn(chunk, (cos, sin), WindowKV(new_k, new_v, mask))
            want = old_codec_attention(attn, chunk, (old_cos, old_sin), old_k, old_v, mask)
            assert torch.equal(got, want)
            assert torch.equal(new_k, old_k) and torch.equal(new_v, old_v)
            pos, start = pos + n, start + n


def dense_reference(a: Attention, x, qk_norm: bool, theta=10000.0):
    """Official algorithm: per-head RMSNorm of q and k (fp32 statistics), rotate-half RoPE at 0..S-1,
    repeat_kv, causal softmax attention."""
    b, s, _ = x.shape

    def rms(w, z):
        zf = z.float()
        return w * (zf * torch.rsqrt(zf.pow(2).mean(-1, keepdim=True) + 1e-6)).to(z.dtype)

    q = a.q_proj(x).view(b, s, HEADS, D)
    k = a.k_proj(x).view(b, s, KV_HEADS, D)
    if qk_norm:
        q, k = rms(a.q_norm.weight, q), rms(a.k_norm.weight, k)
    inv = 1.0 / theta ** (torch.arange(0, D, 2).float() / D)
    ang = torch.arange(s).float()[:, None] * inv
    cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()

    def rope(z):
        z1, z2 = z[..., : D // 2], z[..., D // 2 :]
        return z * cos + torch.cat([-z2, z1], -1) * sin

    q, k = rope(q.transpose(1, 2)), rope(k.transpose(1, 2)).repeat_interleave(HEADS // KV_HEADS, 1)
    v = a.v_proj(x).view(b, s, KV_HEADS, D).transpose(1, 2).repeat_interleave(HEADS // KV_HEADS, 1)
    bias = torch.full((s, s), float("-inf")).triu(1)
    w = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(D) + bias, -1)
    return a.o_proj((w @ v).transpose(1, 2).reshape(b, s, -1))


def _full_cache_forward(attn, x, rotary):
    b, s, _ = x.shape
    cache = KVCache(1, b, KV_HEADS, D, s, "cpu", x.dtype)
    rope = rotary(range(0, s), s, x.dtype, x.device)
    return attn(x, rope, cache.view(slice(0, b), s).layers(0, None)[0])


@pytest.mark.parametrize("qk_norm", [True, False], ids=["qk-norm", "no-norm"])
def test_attention_equals_dense_gqa_reference(qk_norm):
    attn = make_attention(1e-6 if qk_norm else None, seed=2)
    torch.manual_seed(3)
    x = torch.randn(2, 9, HIDDEN)
    with torch.inference_mode():
        got = _full_cache_forward(attn, x, Rotary(D, 10000.0))
        want = dense_reference(attn, x, qk_norm)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_qk_norm_option_owns_the_norm_parameters():
    assert {"q_norm.weight", "k_norm.weight"} <= set(make_attention(1e-6).state_dict())
    assert set(make_attention(None).state_dict()) == {f"{p}_proj.weight" for p in "qkvo"}


@pytest.mark.parametrize("qk_norm", [True, False], ids=["qk-norm", "no-norm"])
def test_prepared_attention_equals_unprepared(qk_norm):
    attn = make_attention(1e-6 if qk_norm else None, seed=4)
    torch.manual_seed(5)
    x = torch.randn(2, 7, HIDDEN)
    with torch.inference_mode():
        plain = _full_cache_forward(attn, x, Rotary(D, 10000.0))
        attn.prepare()
        prepared = _full_cache_forward(attn, x, Rotary(D, 10000.0))
    torch.testing.assert_close(prepared, plain, atol=1e-6, rtol=1e-6)
    assert not hasattr(attn, "q_proj")


def test_rotary_tables_and_per_row_positions_agree():
    rotary = Rotary(D, 1e6)
    cos, sin = rotary.tables(10, torch.device("cpu"), torch.float32)
    assert cos.shape[0] >= 10 and rotary.tables(5, torch.device("cpu"), torch.float32)[0] is cos  # kept
    positions = torch.tensor([[0, 1, 2], [7, 8, 9]])
    at_cos, at_sin = rotary.at(positions, torch.float32)  # [2, 1, 3, D]
    looked_cos, looked_sin = rotary(positions, 10, torch.float32, torch.device("cpu"))
    torch.testing.assert_close(at_cos, looked_cos, atol=1e-6, rtol=0)
    torch.testing.assert_close(at_sin, looked_sin, atol=1e-6, rtol=0)
    shared_cos, _ = rotary(range(7, 10), 10, torch.float32, torch.device("cpu"))
    assert torch.equal(shared_cos, looked_cos[1, 0])
    assert rotary.tables(100, torch.device("cpu"), torch.float32)[0].shape[0] >= 100  # grows on demand
