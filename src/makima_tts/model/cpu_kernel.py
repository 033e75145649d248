"""Our bfloat16 CPU linear kernel (`kernels/bf16_linear.cpp`), compiled on first use.

On a CPU with AVX512-BF16, the first bfloat16 model load compiles it with torch's C++ extension loader
(a C++ compiler and ninja; about 30 s, once per machine and torch version, cached under
`TORCH_EXTENSIONS_DIR`, default `~/.cache/torch_extensions`). Anywhere else, or when it cannot be built,
`bf16_linear()` is None and linears use oneDNN (a warning says why).

Processes building at once take turns on an `flock` of the build directory, which the system releases when
a process dies. torch's own marker file (`lock`) is not released that way: a process killed while
compiling leaves it behind, and every later load would wait for it forever. Holding the flock, no other
process of ours is building, so such a marker is stale and is removed.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import torch

log = logging.getLogger(__name__)
SOURCE = Path(__file__).with_name("kernels") / "bf16_linear.cpp"
FLAGS = ["-O3", "-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl", "-mavx512bf16", "-mfma"]
BLOCK_ROWS, CHUNK = 4, 32  # the packed layout [N/4, K/32, 4, 32]

_lock = threading.Lock()
_built: list[Callable | None] = []


def cpu_has_avx512_bf16() -> bool:
    try:
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags"))
    except (OSError, StopIteration):
        return False
    return "avx512_bf16" in flags.split()


def bf16_linear() -> Callable | None:
    """The kernel's `linear(x [M, K] bf16, packed, bias fp32 | None) -> [M, N] bf16`, or None."""
    with _lock:
        if not _built:
            _built.append(_build() if cpu_has_avx512_bf16() else None)
        return _built[0]


def build_directory() -> Path:
    """Where the kernel is compiled and cached: one directory per Python and torch version."""
    from torch.utils.cpp_extension import get_default_build_root

    root = Path(os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root())
    version = f"py{sys.version_info.major}{sys.version_info.minor}_torch{torch.__version__.replace('+', '_')}"
    return root / version / "makima_bf16_linear"


def _build() -> Callable | None:
    from torch.utils.cpp_extension import load

    venv_bin = str(Path(sys.executable).parent)
    if shutil.which("ninja") is None and (Path(venv_bin) / "ninja").exists():
        os.environ["PATH"] = venv_bin + os.pathsep + os.environ.get("PATH", "")  # pip's ninja, venv not activated
    log.info("loading the bfloat16 CPU kernel (compiled once per machine, about 30 s)")
    try:
        where = build_directory()
        where.mkdir(parents=True, exist_ok=True)
        with open(where / "makima.flock", "w") as turn:
            fcntl.flock(turn, fcntl.LOCK_EX)  # released with the file, or by the system if this process dies
            (where / "lock").unlink(missing_ok=True)  # torch's marker, left only by a build that was killed
            return load("makima_bf16_linear", [str(SOURCE)], extra_cflags=FLAGS, build_directory=str(where)).linear
    except Exception as exc:  # no compiler, no ninja, no headers: oneDNN does the work instead
        log.warning("the bfloat16 CPU kernel could not be built, so linears use oneDNN (slower when decoding); "
                    "install a C++ compiler (g++) and ninja to get it. Reason: %s", exc)
        return None


def can_use(weight: torch.Tensor) -> bool:
    n, k = weight.shape
    return (weight.device.type == "cpu" and weight.dtype == torch.bfloat16 and n % BLOCK_ROWS == 0
            and k % CHUNK == 0 and bf16_linear() is not None)


def pack(weight: torch.Tensor) -> torch.Tensor:
    """[N, K] -> [N/4, K/32, 4, 32]: each block of 4 output rows is one contiguous run."""
    n, k = weight.shape
    return weight.view(n // BLOCK_ROWS, BLOCK_ROWS, k // CHUNK, CHUNK).transpose(1, 2).contiguous()
