"""Linear-map benchmark: our bfloat16 CPU kernel against oneDNN's pre-packed product and `F.linear`,
for the weight shapes of the 0.6B model and the row counts of decoding (1-8 streams) and prefill.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/linear_bench.py [--rows 1,2,4,8,24] [--threads 1]
        [--json-out results.json]

Each figure is the median over repeats of one pass through 16 distinct copies of the matrix (so the
weights come from memory, as in decoding), divided by 16; GB/s counts the weight bytes read.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from engine_bench import machine, report  # the same machine record (this script's folder is on sys.path)

from makima_tts.model import cpu_kernel

# (name, out, in): q|k|v, o, gate|up and down of a talker/code-predictor layer, a code-predictor head
SHAPES = [("qkv", 4096, 1024), ("o", 1024, 2048), ("gate_up", 6144, 1024), ("down", 1024, 3072),
          ("cp_head", 2048, 1024)]
COPIES = 16


def timed(op, x: torch.Tensor, matrices: list, repeats: int) -> float:
    """Median ms of `op(x, m)` over the copies, per copy."""
    def one_pass():
        for matrix in matrices:
            op(x, matrix)

    one_pass()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        one_pass()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times) / len(matrices)


def onednn_linear(x: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], "")


def bench(rows: list[int], repeats: int) -> list[dict]:
    kernel = cpu_kernel.bf16_linear()
    results = []
    for name, n, k in SHAPES:
        weights = [torch.randn(n, k, dtype=torch.bfloat16) for _ in range(COPIES)]
        onednn = [torch.ops.mkldnn._reorder_linear_weight(w, 1) for w in weights]
        ours = [cpu_kernel.pack(w) for w in weights] if kernel else []
        for m in rows:
            x = torch.randn(m, k, dtype=torch.bfloat16)
            row = {"shape": name, "out": n, "in": k, "rows": m,
                   "f_linear_ms": timed(F.linear, x, weights, repeats),
                   "onednn_ms": timed(onednn_linear, x, onednn, repeats)}
            if kernel:
                row["ours_ms"] = timed(lambda x, p: kernel(x, p, None), x, ours, repeats)
            results.append(row)
    return results


def table(results: list[dict]) -> str:
    lines = ["| shape | out x in | rows | F.linear ms | oneDNN packed ms | ours ms | ours GB/s | oneDNN / ours |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        ours = r.get("ours_ms")
        cells = [f"{ours:.3f}", f"{r['out'] * r['in'] * 2 / 1e6 / ours:.1f}", f"{r['onednn_ms'] / ours:.2f}"] \
            if ours else ["-", "-", "-"]
        lines.append(f"| {r['shape']} | {r['out']}x{r['in']} | {r['rows']} | {r['f_linear_ms']:.3f} | "
                     f"{r['onednn_ms']:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default="1,2,4,8,24")
    ap.add_argument("--threads", type=int, default=1, help="1: what the engine's generation thread uses on 2 cores")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--json-out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    info = {"command": " ".join(sys.argv),
            "machine": {**machine(), "avx512_bf16": cpu_kernel.cpu_has_avx512_bf16()}}
    info["results"] = bench([int(r) for r in args.rows.split(",")], args.repeats)
    report(info, table(info["results"]), args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
