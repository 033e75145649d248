"""A cloned voice: the speaker x-vector, and for ICL mode the reference codes and transcript.

Saved as one safetensors file or blob (tensors + a small JSON header), so a voice computed once at upload
is reloaded without touching the encoder again (`save`/`load` for files, `to_bytes`/`from_bytes` for the
voice store's objects).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

VoiceMode = Literal["icl", "xvector"]


@dataclass(frozen=True)
class VoicePrompt:
    mode: VoiceMode
    x_vector: torch.Tensor  # [enc_dim] float32
    ref_codes: torch.Tensor | None = None  # [T_ref, 16] int64, ICL only
    ref_text: str | None = None  # ICL only

    def __post_init__(self):
        if self.mode not in ("icl", "xvector"):
            raise ValueError(f"voice mode must be 'icl' or 'xvector', not {self.mode!r}")
        if self.mode == "icl" and (self.ref_codes is None or not self.ref_text):
            raise ValueError("an ICL voice needs reference codes and a reference transcript")

    def to_bytes(self) -> bytes:
        tensors = {"x_vector": self.x_vector.detach().float().contiguous().cpu()}
        if self.ref_codes is not None:
            tensors["ref_codes"] = self.ref_codes.detach().long().contiguous().cpu()
        meta = {"mode": self.mode, "ref_text": json.dumps(self.ref_text), "format": "makima-voice-1"}
        return save_tensors(tensors, metadata=meta)

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "the data") -> VoicePrompt:
        """ValueError when `data` is not a makima-tts voice prompt."""
        try:
            (size,) = struct.unpack("<Q", data[:8])
            meta = json.loads(data[8:8 + size]).get("__metadata__") or {}
        except (struct.error, ValueError, AttributeError):
            meta = {}
        if meta.get("format") != "makima-voice-1":
            raise ValueError(f"{source} is not a makima-tts voice prompt file")
        tensors = load_tensors(data)
        return cls(
            mode=meta["mode"],
            x_vector=tensors["x_vector"],
            ref_codes=tensors.get("ref_codes"),
            ref_text=json.loads(meta.get("ref_text", "null")),
        )

    def save(self, path: str | Path) -> None:
        Path(path).write_bytes(self.to_bytes())

    @classmethod
    def load(cls, path: str | Path) -> VoicePrompt:
        return cls.from_bytes(Path(path).read_bytes(), str(path))
