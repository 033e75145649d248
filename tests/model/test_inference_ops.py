"""Prepared projections and convolutions (`model/linear.py`, `model/cpu_kernel.py`) against the plain
torch ops."""

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from makima_tts.model import cpu_kernel
from makima_tts.model.linear import InferenceConv1d, InferenceLinear

needs_avx512_bf16 = pytest.mark.skipif(not cpu_kernel.cpu_has_avx512_bf16(), reason="the kernel needs AVX512-BF16")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("rows", [1, 3, 8])
def test_linear_without_own_kernel_is_bit_identical(dtype, rows):
    torch.manual_seed(0)
    weight = torch.randn(96, 64, dtype=dtype)
    x = torch.randn(rows, 1, 64, dtype=dtype)
    prepared = InferenceLinear(weight, own_kernel=False)
    assert prepared.kernel is None
    assert (prepared.packed is not None) == (dtype == torch.bfloat16 and torch.backends.mkldnn.is_available())
    assert torch.equal(prepared(x), F.linear(x, weight))


def test_own_kernel_only_where_it_applies():
    assert InferenceLinear(torch.randn(96, 64)).kernel is None  # float32
    assert InferenceLinear(torch.randn(90, 64, dtype=torch.bfloat16)).kernel is None  # 90 rows: not whole blocks
    assert InferenceLinear(torch.randn(96, 48, dtype=torch.bfloat16)).kernel is None  # 48 columns: not whole chunks


@needs_avx512_bf16
def test_own_kernel_builds_on_this_cpu():
    # where the CPU has AVX512-BF16 (CI's machines do), a missing compiler must fail here, not fall back quietly
    assert cpu_kernel.bf16_linear() is not None
    assert InferenceLinear(torch.randn(96, 64, dtype=torch.bfloat16)).kernel is not None


@needs_avx512_bf16
def test_a_build_killed_midway_does_not_block_the_next_load():
    """A process killed while compiling leaves torch's `lock` marker behind; the next process must still load
    the kernel (before, it waited for that marker forever)."""
    assert cpu_kernel.bf16_linear() is not None  # built (or loaded from the cache) here first
    where = cpu_kernel.build_directory()
    (where / "lock").touch()  # what a killed build leaves
    load = "from makima_tts.model.cpu_kernel import bf16_linear; assert bf16_linear() is not None"
    done = subprocess.run([sys.executable, "-c", load], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not (where / "lock").exists()


def _within_bf16_rounding(got: torch.Tensor, exact: torch.Tensor) -> bool:
    """One rounding to bfloat16 (half a unit in the last place: at most 2^-8 relative) of the float32 sum."""
    return bool(((got.float() - exact).abs() <= exact.abs() * 2**-8 + 1e-4).all())


@needs_avx512_bf16
@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5, 6, 7, 8, 13, 40])
@pytest.mark.parametrize("bias", [False, True])
def test_own_kernel_equals_exact_product_up_to_bf16_rounding(rows, bias):
    torch.manual_seed(rows)
    n, k = 1032, 96  # 258 blocks of 4 rows: more than one task for at::parallel_for
    weight = torch.randn(n, k, dtype=torch.bfloat16)
    b = torch.randn(n) if bias else None
    x = torch.randn(rows, k, dtype=torch.bfloat16)
    got = cpu_kernel.bf16_linear()(x, cpu_kernel.pack(weight), b)
    assert got.dtype == torch.bfloat16 and got.shape == (rows, n)
    assert _within_bf16_rounding(got, x.float() @ weight.float().T + (b if bias else 0))
    # a row's result does not depend on the other rows in the batch (tiles of 1-6 rows, several passes)
    assert torch.equal(cpu_kernel.bf16_linear()(x[-1:], cpu_kernel.pack(weight), b), got[-1:])


@needs_avx512_bf16
@pytest.mark.parametrize("rows", [1, 3, 4, 5, 12])
def test_linear_takes_own_kernel_for_up_to_4_rows_and_onednn_above(rows):
    torch.manual_seed(rows)
    weight, bias = torch.randn(96, 64, dtype=torch.bfloat16), torch.randn(96, dtype=torch.bfloat16)
    x = torch.randn(rows, 2, 64, dtype=torch.bfloat16)[:, 1:]  # [rows, 1, 64], not contiguous
    prepared = InferenceLinear(weight, bias)
    assert prepared.kernel is not None and prepared.weight is None
    got = prepared(x)
    assert got.shape == (rows, 1, 96)
    if rows <= InferenceLinear.OWN_KERNEL_MAX_ROWS:
        own = cpu_kernel.bf16_linear()(x.reshape(rows, 64).contiguous(), prepared.own_packed, prepared.own_bias)
        assert torch.equal(got.view(rows, 96), own)
        assert _within_bf16_rounding(got, x.float() @ weight.float().T + bias.float())
    else:
        assert torch.equal(got, InferenceLinear(weight, bias, own_kernel=False)(x))  # oneDNN's product


# (c_in, c_out, kernel, dilation, groups, time): the codec's kinds of stride-1 conv
CONVS = [(64, 96, 7, 1, 1, 9), (48, 48, 7, 3, 1, 25), (32, 32, 7, 9, 1, 60), (40, 40, 7, 1, 40, 10),
         (48, 48, 1, 1, 1, 30), (24, 1, 7, 1, 1, 200), (64, 64, 3, 1, 1, 4)]


@pytest.mark.parametrize("c_in, c_out, kernel, dilation, groups, time", CONVS)
def test_conv1d(c_in, c_out, kernel, dilation, groups, time):
    torch.manual_seed(1)
    conv = torch.nn.Conv1d(c_in, c_out, kernel, dilation=dilation, groups=groups)
    for batch in (1, 5):
        x = torch.randn(batch, c_in, (kernel - 1) * dilation + time)
        # float32: the plain conv, exactly
        assert torch.equal(InferenceConv1d(conv)(x), conv(x))
        # bfloat16 (packed on CPU): the same conv up to bf16 rounding, for any batch and length
        half = conv.to(torch.bfloat16)
        got = InferenceConv1d(half)(x.bfloat16()).float()
        want = F.conv1d(x.bfloat16().float(), half.weight.float(), half.bias.float(), dilation=dilation, groups=groups)
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=2e-2, atol=2e-2 * want.abs().max().item())
        conv = conv.float()


def test_conv1d_packs_once_per_channels_and_length_whatever_the_batch():
    """The number of streams a codec decode carries changes all the time; a pack per batch size would
    repack the weights at each change (40-290 ms for the codec's 29 convs)."""
    torch.manual_seed(2)
    half = torch.nn.Conv1d(48, 48, 7, dilation=3).to(torch.bfloat16)
    conv = InferenceConv1d(half)
    assert conv.packs is not None  # bfloat16 on CPU: packed for oneDNN
    for batch in (1, 3, 8, 3, 1):
        x = torch.randn(batch, 48, 18 + 25, dtype=torch.bfloat16)
        want = F.conv1d(x.float(), half.weight.float(), half.bias.float(), dilation=3)
        torch.testing.assert_close(conv(x).float(), want, rtol=2e-2, atol=2e-2 * want.abs().max().item())
        assert list(conv.packs) == [(48, 43)]
    conv(torch.randn(2, 48, 18 + 60, dtype=torch.bfloat16))  # another length (a whole-utterance decode)
    assert list(conv.packs) == [(48, 43), (48, 78)]
