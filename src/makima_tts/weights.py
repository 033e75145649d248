"""The only place that knows checkpoint key names.

`model.safetensors` holds the talker, code predictor and (Base only) speaker encoder;
`speech_tokenizer/model.safetensors` holds the codec decoder and the Mimi encoder. Keys are routed to
our modules by prefix rules, then loaded strictly: anything missing or left over is reported by name.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

# (checkpoint prefix, component, our prefix); the first matching rule wins, so order matters.
MAIN_RULES = [
    ("talker.code_predictor.model.codec_embedding.", "code_predictor", "codec_embedding."),
    ("talker.code_predictor.model.layers.", "code_predictor", "stack.layers."),
    ("talker.code_predictor.model.norm.", "code_predictor", "stack.norm."),
    ("talker.code_predictor.lm_head.", "code_predictor", "lm_head."),
    ("talker.code_predictor.small_to_mtp_projection.", "code_predictor", "projection."),
    ("talker.model.text_embedding.", "talker", "text_embedding."),
    ("talker.model.codec_embedding.", "talker", "codec_embedding."),
    ("talker.model.layers.", "talker", "stack.layers."),
    ("talker.model.norm.", "talker", "stack.norm."),
    ("talker.text_projection.", "talker", "text_projection."),
    ("talker.codec_head.", "talker", "codec_head."),
    ("speaker_encoder.", "speaker_encoder", ""),
]
CODEC_RULES = [
    ("decoder.", "codec_decoder", ""),
    ("encoder.", "codec_encoder", "mimi."),
]


class WeightsError(RuntimeError):
    pass


def route(state: dict[str, torch.Tensor], rules: Iterable[tuple[str, str, str]]):
    """Split a flat state dict into {component: state dict in our names}; returns (parts, unexpected)."""
    parts: dict[str, dict[str, torch.Tensor]] = {}
    unexpected = []
    rules = list(rules)
    for key, value in state.items():
        for prefix, component, ours in rules:
            if key.startswith(prefix):
                parts.setdefault(component, {})[ours + key[len(prefix) :]] = value
                break
        else:
            unexpected.append(key)
    return parts, unexpected


def unroute(component: str, state: dict[str, torch.Tensor], rules: Iterable[tuple[str, str, str]]):
    """Our names -> checkpoint names (used to write checkpoints in the official layout)."""
    out = {}
    mine = [(p, o) for p, c, o in rules if c == component]
    for key, value in state.items():
        for prefix, ours in sorted(mine, key=lambda r: -len(r[1])):
            if key.startswith(ours):
                out[prefix + key[len(ours) :]] = value
                break
        else:
            raise WeightsError(f"no checkpoint name for {component}.{key}")
    return out


def load_strict(module: nn.Module, state: dict[str, torch.Tensor], what: str, dtype: torch.dtype) -> None:
    """Copy `state` into `module` (converting to `dtype`); every parameter and persistent buffer must be
    present and nothing may be left over."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    wrong = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(state) & set(expected))
        if state[k].shape != expected[k].shape
    ]
    if missing or extra or wrong:
        lines = [f"{what}: the checkpoint does not match the configuration"]
        if missing:
            lines.append(f"  missing keys ({len(missing)}): {', '.join(missing[:20])}")
        if extra:
            lines.append(f"  unexpected keys ({len(extra)}): {', '.join(extra[:20])}")
        if wrong:
            lines.append(f"  wrong shapes ({len(wrong)}): {'; '.join(wrong[:10])}")
        raise WeightsError("\n".join(lines))
    converted = {
        k: (v.to(dtype) if v.is_floating_point() and expected[k].is_floating_point() else v) for k, v in state.items()
    }
    module.load_state_dict(converted, strict=True, assign=True)


def read_checkpoint(model_dir: Path) -> tuple[dict[str, dict[str, torch.Tensor]], list[str]]:
    """Both safetensors files of a checkpoint, routed to components; returns (parts, unexpected keys)."""
    main_parts, main_extra = route(load_file(str(model_dir / "model.safetensors")), MAIN_RULES)
    codec_parts, codec_extra = route(load_file(str(model_dir / "speech_tokenizer" / "model.safetensors")), CODEC_RULES)
    return {**main_parts, **codec_parts}, main_extra + ["speech_tokenizer/" + k for k in codec_extra]
