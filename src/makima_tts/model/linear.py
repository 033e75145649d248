"""Linear maps prepared for inference after the weights are loaded and placed.

`InferenceLinear` holds one weight matrix (often a fusion such as q|k|v). On CPU in bfloat16 it keeps
the matrix pre-packed in oneDNN's blocked layout (bit-identical to `F.linear` without bias) and, on
CPUs with AVX512-BF16, also for our own kernel (`cpu_kernel.py`), which takes products of up to 4 rows
(decoding 1-4 streams, where it streams the weights faster than oneDNN; `benchmarks/linear_bench.py`
measures both on the model's shapes); more rows (many streams, prefill) go to oneDNN. Our kernel's
results equal the exact product within bfloat16 rounding. Everywhere else it is plain `F.linear`.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F

from . import cpu_kernel


def _can_pack(weight: torch.Tensor) -> bool:
    return weight.device.type == "cpu" and weight.dtype == torch.bfloat16 and torch.backends.mkldnn.is_available()


class InferenceLinear:
    OWN_KERNEL_MAX_ROWS = 4

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None, own_kernel: bool = True):
        """`own_kernel=False`: never our CPU kernel (oneDNN or `F.linear` only)."""
        weight = weight.detach().contiguous()
        self.bias = None if bias is None else bias.detach()
        self.out_features = weight.shape[0]
        self.kernel = cpu_kernel.bf16_linear() if own_kernel and cpu_kernel.can_use(weight) else None
        self.own_packed = cpu_kernel.pack(weight) if self.kernel is not None else None
        self.own_bias = None if self.kernel is None or bias is None else self.bias.float()
        self.packed, self.weight = None, None
        if _can_pack(weight):
            self.packed = torch.ops.mkldnn._reorder_linear_weight(weight, 1)
        else:
            self.weight = weight

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # x [..., in] -> [..., out]
        if self.kernel is not None and x.numel() <= self.OWN_KERNEL_MAX_ROWS * x.shape[-1]:
            rows = x.reshape(-1, x.shape[-1]).contiguous()
            return self.kernel(rows, self.own_packed, self.own_bias).view(*x.shape[:-1], self.out_features)
        if self.packed is not None:
            return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")
        return F.linear(x, self.weight, self.bias)


class InferenceConv1d:
    """A Conv1d (no padding, stride 1, any dilation and groups) prepared for inference.

    On CPU in bfloat16 the weight is pre-packed for oneDNN as a 1 x K 2-D convolution, so no call pays
    for reordering it (the codec's 1536x1024x7 conv: 5.9 -> 2.4 ms per frame on the 2-core machine).
    The packed layout follows the input's channels and length (a mismatch costs a slow reorder per
    call) but not its batch: a pack made for one row serves 1-32 rows as fast, with the same bits
    (measured on the codec's convs). So packs are made per (channels, length), for one row, and the
    last `PACKED_SHAPES` are kept: a streaming decode sees one per layer however many streams it
    carries, and a change in their number costs nothing (keyed by the whole shape, each change repacked
    all 29 of the codec's convs: 40-290 ms). Results differ from `F.conv1d` within bfloat16 rounding
    (another accumulation order); float32 and every other device keep `F.conv1d` exactly.
    """

    PACKED_SHAPES = 2

    def __init__(self, conv: torch.nn.Conv1d):
        assert conv.stride == (1,) and conv.padding == (0,), "only the codec's unpadded stride-1 convs"  # nosec B101: our own layers, not input
        self.weight = conv.weight.detach()
        self.bias = None if conv.bias is None else conv.bias.detach()
        self.dilation, self.groups = conv.dilation[0], conv.groups
        # (channels, length) -> the weight packed for inputs of that shape (any batch)
        self.packs: OrderedDict[tuple[int, int], torch.Tensor] | None = OrderedDict() if _can_pack(self.weight) else None

    def _packed(self, channels: int, length: int) -> torch.Tensor:
        key = (channels, length)
        packed = self.packs.get(key)
        if packed is None:
            packed = torch._C._nn.mkldnn_reorder_conv2d_weight(
                self.weight[:, :, None].to_mkldnn(), [0, 0], [1, 1], [1, self.dilation], self.groups,
                [1, channels, 1, length],
            )
            self.packs[key] = packed
            if len(self.packs) > self.PACKED_SHAPES:
                self.packs.popitem(last=False)
        self.packs.move_to_end(key)
        return packed

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # x [B, C_in, T] -> [B, C_out, T - (k-1)*dilation]
        if self.packs is None:
            return F.conv1d(x, self.weight, self.bias, dilation=self.dilation, groups=self.groups)
        y = torch.ops.mkldnn._convolution_pointwise(
            x[:, :, None], self._packed(x.shape[1], x.shape[2]), self.bias, [0, 0], [1, 1], [1, self.dilation],
            self.groups, "none", [], "",
        )
        return y[:, :, 0]
