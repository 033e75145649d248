"""A cloned voice: the speaker x-vector, and for ICL mode the reference codes and transcript.

Saved as one safetensors file (tensors + a small JSON header), so a voice computed once at upload is
reloaded without touching the encoder again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from safetensors.torch import load_file, save_file

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

    def save(self, path: str | Path) -> None:
        tensors = {"x_vector": self.x_vector.detach().float().contiguous().cpu()}
        if self.ref_codes is not None:
            tensors["ref_codes"] = self.ref_codes.detach().long().contiguous().cpu()
        meta = {"mode": self.mode, "ref_text": json.dumps(self.ref_text), "format": "makima-voice-1"}
        save_file(tensors, str(path), metadata=meta)

    @classmethod
    def load(cls, path: str | Path) -> VoicePrompt:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        if meta.get("format") != "makima-voice-1":
            raise ValueError(f"{path} is not a makima-tts voice prompt file")
        tensors = load_file(str(path))
        return cls(
            mode=meta["mode"],
            x_vector=tensors["x_vector"],
            ref_codes=tensors.get("ref_codes"),
            ref_text=json.loads(meta.get("ref_text", "null")),
        )
