"""Static-shape frames, captured as CUDA graphs on `cuda`.

A frame (code predictor, talker step and both samplings) has no host syncs when it runs with fixed
shapes (`FrameStep.static_frame`, step.py). `StaticFrames` picks the shape bucket (rows rounded up to a
power of two, attended context rounded up to a power of two from 256) and runs that bucket's frame: on
CUDA a graph captured once at start, replayed with one launch; elsewhere the same function called
directly (tests use this to check the static path against the eager one on CPU).

Capture needs no utterance in flight: the warm-up run and the captured run only touch rows of empty
slots (positions stay where they are; each prefill resets the rest).
"""

from __future__ import annotations

import logging

import torch

from .step import FrameStep

log = logging.getLogger(__name__)
MIN_CONTEXT_BUCKET = 256


def _powers_of_two(smallest: int, largest: int) -> list[int]:
    sizes, size = [], smallest
    while size < largest:
        sizes.append(size)
        size *= 2
    return [*sizes, largest]


class StaticFrames:
    def __init__(self, step: FrameStep, cuda_graphs: bool):
        self.step, self.pool = step, step.pool
        self.cuda_graphs = cuda_graphs
        self.row_buckets = _powers_of_two(1, self.pool.slots)
        self.context_buckets = _powers_of_two(min(MIN_CONTEXT_BUCKET, self.pool.max_context), self.pool.max_context)
        self._graphs: dict[tuple[int, int], tuple[torch.cuda.CUDAGraph, tuple[torch.Tensor, torch.Tensor]]] = {}
        self._graph_pool = torch.cuda.graph_pool_handle() if cuda_graphs else None

    def bucket(self) -> tuple[int, int]:
        """(rows, context) for the slots in use now."""
        n, context = self.pool.rows_in_use(), self.pool.context_in_use()
        rows = next(b for b in self.row_buckets if b >= n)
        return rows, next(b for b in self.context_buckets if b >= context)

    def run(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One frame for every occupied slot. -> codes [n, 16] (a copy the caller keeps), next codebook 0
        [n] (valid until the next frame), n = rows in use."""
        n = self.pool.rows_in_use()
        rows, context = self.bucket()
        self.step.begin_static_frame(rows)
        if self.cuda_graphs:
            graph, (frame, token) = self._graphs[rows, context]
            graph.replay()
        else:
            frame, token = self.step.static_frame(rows, context)
        self.step.end_static_frame()
        return frame[:n].clone(), token[:n]

    def capture_all(self) -> None:
        """Capture every bucket (CUDA only) while no utterance is in flight, before the first frame."""
        if not self.cuda_graphs or self._graphs:
            return
        for rows in self.row_buckets:
            for context in self.context_buckets:
                self._graphs[rows, context] = self._capture(rows, context)
        log.info("captured %d CUDA graphs (rows %s x context %s)", len(self._graphs), self.row_buckets,
                 self.context_buckets)

    def _capture(self, rows: int, context: int):
        device = self.pool.lengths.device
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):  # warm-up: kernels chosen and workspaces made before capture
            self.step.static_frame(rows, context)
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: the codec thread (or a voice being cloned) may use the GPU meanwhile on other streams
        with torch.cuda.graph(graph, pool=self._graph_pool, stream=side, capture_error_mode="thread_local"):
            outputs = self.step.static_frame(rows, context)
        return graph, outputs
