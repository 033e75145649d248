"""The codec's one-frame decode with static shapes, captured as CUDA graphs on `cuda`.

`StaticCodec` decodes rows [0, bucket) of the codec stage's streaming state, the rows in use rounded up
to a power of two, from a static codes buffer (rows past those in use get code 0 and decode into free
slots, which every `StartUtterance` resets). On CUDA each bucket's decode is a graph captured once on the
codec thread before the first frame, replayed with one launch; elsewhere the same function is called
directly (tests check it against the eager decode on CPU). Every stateful layer updates the state in
place (conv histories and window keys/values by `copy_`, positions by `+=`), so the state's tensors serve
as the graphs' static buffers as they are.

A row's audio equals the eager decode within float noise, not bit for bit: the convolutions run over
another batch size, which may sum in another order.
"""

from __future__ import annotations

import logging

import torch

from ..model.codec_state import CodecState

log = logging.getLogger(__name__)


class StaticCodec:
    def __init__(self, codec, state: CodecState, cuda_graphs: bool):
        self.codec, self.state, self.cuda_graphs = codec, state, cuda_graphs
        self.buckets = sorted({min(1 << i, state.batch) for i in range(state.batch.bit_length() + 1)})  # 1, 2, 4, .., batch
        quantizers = codec.cfg.num_quantizers
        self.codes = torch.zeros(state.batch, quantizers, 1, dtype=torch.long, device=state.pos.device)
        self._graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [n, Q] for state rows [0, n) -> audio [n, 1920] (valid until the next decode)."""
        n = codes.shape[0]
        bucket = next(b for b in self.buckets if b >= n)
        self.codes[:n, :, 0] = codes
        self.codes[n:bucket] = 0
        if self.cuda_graphs:
            graph, audio = self._graphs[bucket]
            graph.replay()
        else:
            audio = self._decode(bucket)
        return audio[:n]

    def _decode(self, bucket: int) -> torch.Tensor:
        return self.codec.decode_step(self.codes[:bucket], self.state.first_rows(bucket))  # [bucket, 1920]

    def capture_all(self) -> None:
        """Capture every bucket (CUDA only), on the codec thread, before any utterance starts."""
        if not self.cuda_graphs or self._graphs:
            return
        device = self.codes.device
        pool = torch.cuda.graph_pool_handle()
        for bucket in self.buckets:
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):  # warm-up: kernels chosen and workspaces made before capture
                self._decode(bucket)
            torch.cuda.current_stream(device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool, stream=side, capture_error_mode="thread_local"):
                audio = self._decode(bucket)
            self._graphs[bucket] = graph, audio
        log.info("captured %d codec CUDA graphs (rows %s)", len(self._graphs), self.buckets)
