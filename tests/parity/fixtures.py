"""Read-only access to the committed parity fixtures in tests/fixtures/parity (written by
build_fixtures.py with the official qwen-tts package; nothing here imports it).

    cases.json   {"checkpoints": {name: {...sha256...}}, "references": {...}, "cases": [case dicts]}
    outputs.npz  official outputs and intermediates by key, e.g. "<case>/codes" int64 [frames, 16],
                 "<case>/wav" float32 [samples]; every key is described in README.md

A derived checkpoint (base_eos) is not committed: checkpoint_dir() rebuilds it once per machine from its
parent checkpoint plus the raw bytes of one patched tensor row (stored in outputs.npz) and checks that the
result has the sha256 of the file the official outputs were made with.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np

FIXTURE_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "parity"


@functools.cache
def load_manifest() -> dict:
    return json.loads((FIXTURE_DIR / "cases.json").read_text(encoding="utf-8"))


def load_cases() -> list[dict]:
    """All cases (deep copies, safe to modify), in the order they were run."""
    return copy.deepcopy(load_manifest()["cases"])


def get_case(name: str) -> dict:
    for case in load_manifest()["cases"]:
        if case["name"] == name:
            return copy.deepcopy(case)
    raise KeyError(name)


@functools.cache
def _npz() -> np.lib.npyio.NpzFile:
    return np.load(FIXTURE_DIR / "outputs.npz", allow_pickle=False)


def load_array(key: str) -> np.ndarray:
    return _npz()[key]


def array_keys() -> list[str]:
    return sorted(_npz().files)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def checkpoint_dir(name: str) -> Path:
    """Directory of a checkpoint in the official layout, loadable by our loader and the official one."""
    info = load_manifest()["checkpoints"][name]
    if "derived_from" not in info:
        return FIXTURE_DIR / name
    cache = Path(os.environ.get("MAKIMA_PARITY_CACHE", Path(tempfile.gettempdir()) / "makima-tts-parity"))
    dst = cache / f"{name}-{info['model_sha256'][:16]}"
    if not (dst / "model.safetensors").is_file():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=cache, prefix=f".{name}-"))
        patch = info["row_patch"]
        derive_checkpoint(
            FIXTURE_DIR / info["derived_from"],
            tmp,
            patch["tensor"],
            patch["row"],
            load_array(patch["bytes_key"]).tobytes(),
        )
        got = file_sha256(tmp / "model.safetensors")
        if got != info["model_sha256"]:
            shutil.rmtree(tmp)
            raise RuntimeError(f"derived checkpoint {name}: sha256 {got} != recorded {info['model_sha256']}")
        try:
            tmp.rename(dst)
        except OSError:  # another process finished first
            shutil.rmtree(tmp)
    return dst


def derive_checkpoint(src: Path, dst: Path, tensor: str, row: int, row_bytes: bytes) -> None:
    """Copy checkpoint `src` into `dst` (following symlinks) with row `row` of `tensor` in
    model.safetensors overwritten by `row_bytes` (the raw little-endian bytes of that row)."""
    src, dst = Path(src), Path(dst)
    shutil.copytree(
        src, dst, dirs_exist_ok=True, ignore=lambda d, names: ["model.safetensors"] if Path(d) == src else []
    )
    data = bytearray((src / "model.safetensors").read_bytes())
    (header_len,) = struct.unpack("<Q", data[:8])
    meta = json.loads(data[8 : 8 + header_len])[tensor]
    row_len = len(row_bytes)
    begin, end = meta["data_offsets"]
    assert (end - begin) == row_len * meta["shape"][0], (tensor, meta, row_len)
    start = 8 + header_len + begin + row * row_len
    data[start : start + row_len] = row_bytes
    (dst / "model.safetensors").write_bytes(bytes(data))
