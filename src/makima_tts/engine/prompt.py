"""Talker prompts for every mode: prefill rows and the trailing text fed one row per generated frame.

Each row is text track + codec track (qwen3-tts-reference.md section 5). Layout, with P/B/E the
projected tts_pad/tts_bos/tts_eos text vectors and C() the talker codec embedding:

    [instruct rows]  role(3)  P+C(think..)  ...  P+C(spk)  B+C(pad)  <tail>

tail, streaming text:      T[0] + C(bos)                     trailing = T[1:] ++ E
tail, non-streaming text:  (T ++ E) + C(pad) ..., P + C(bos)  trailing = P
tail, ICL:                 (ref_text ++ T ++ E) mixed with C(bos) ++ sum-of-16(ref codes), see `_icl_rows`

The first `Prompt.shared_rows` rows depend on the voice, language, instruct and text mode only, never on
the utterance's text (prefix_cache.py reuses their keys/values): [instruct rows] role ... B+C(pad) in
every layout, and for ICL also the rows pairing the reference transcript with C(bos) and the first
reference frames (streaming) or with C(pad) (non-streaming); from the first target-text token on, every
row (and so every later key/value) depends on the text.

The tensor calls mirror the official ones in shape so fp32 results agree bit for bit where possible.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import ModelConfig
from ..text import TextTokenizer
from .types import SpeechRequest


class PromptError(ValueError):
    """The request cannot be turned into a prompt for this model (message says what to change)."""


@dataclass
class Prompt:
    embeds: torch.Tensor  # [1, P, H] prefill rows
    trailing: torch.Tensor  # [N, H] text rows for generation steps 0..N-1; row N onward uses `pad`
    pad: torch.Tensor  # [H]
    ref_codes: torch.Tensor | None  # [T_ref, 16] (ICL: the codec is primed with these)
    text_tokens: int  # number of text tokens of the utterance (drives the frame budget)
    shared_rows: int = 0  # leading rows of `embeds` that do not depend on the text (see the module docstring)


def resolve_language(cfg: ModelConfig, language: str | None, speaker: str | None) -> int | None:
    lang = (language or "auto").lower()
    table = cfg.talker.codec_language_id
    if lang != "auto" and lang not in table:
        raise PromptError(f"unsupported language {language!r}; choose one of {', '.join(cfg.languages)}")
    lang_id = None if lang == "auto" else table[lang]
    if speaker and lang in ("chinese", "auto"):
        dialect = cfg.talker.spk_is_dialect.get(speaker.lower(), False)
        if dialect:
            lang_id = table[dialect]
    return lang_id


def _check_voice(cfg: ModelConfig, req: SpeechRequest) -> None:
    kind = cfg.tts_model_type
    if kind == "base":
        if req.voice is None:
            raise PromptError("this Base model clones a voice: give a voice (reference audio or a saved voice prompt)")
        if req.speaker or req.instruct:
            raise PromptError("a Base model takes no speaker name or instruct; use a cloned voice")
    elif kind == "custom_voice":
        if not req.speaker:
            raise PromptError(f"this CustomVoice model needs a speaker: one of {', '.join(cfg.speakers)}")
        if req.speaker.lower() not in cfg.talker.spk_id:
            raise PromptError(f"unknown speaker {req.speaker!r}; choose one of {', '.join(cfg.speakers)}")
        if req.instruct and not cfg.supports_instruct:
            raise PromptError("this CustomVoice size does not support instruct (only the 1.7B model does)")
        if req.voice is not None:
            raise PromptError("a CustomVoice model cannot clone a voice; pick a speaker")
    elif kind == "voice_design":
        if req.voice is not None or req.speaker:
            raise PromptError("a VoiceDesign model takes an instruct describing the voice, not a voice or speaker")
    else:
        raise PromptError(f"unknown tts_model_type {kind!r}")


def build_prompt(req: SpeechRequest, cfg: ModelConfig, tokenizer: TextTokenizer, talker, code_predictor) -> Prompt:
    _check_voice(cfg, req)
    if not req.text or not req.text.strip():
        raise PromptError("text is empty")
    tc = cfg.talker
    device = talker.codec_embedding.weight.device
    dtype = talker.codec_embedding.weight.dtype

    def ids(values) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.long, device=device)

    text_embed, codec_embed = talker.text_embed, talker.codec_embedding
    assistant = ids([tokenizer.assistant_ids(req.text)])  # [1, L]
    text = assistant[:, 3:-5]
    if text.shape[1] == 0:
        raise PromptError("text is empty after tokenization")

    tts_bos, tts_eos, tts_pad = text_embed(
        ids([[cfg.tts_bos_token_id, cfg.tts_eos_token_id, cfg.tts_pad_token_id]])
    ).chunk(3, dim=1)  # 3 x [1, 1, H]

    lang_id = resolve_language(cfg, req.language, req.speaker)
    if lang_id is None:
        control = [tc.codec_nothink_id, tc.codec_think_bos_id, tc.codec_think_eos_id]
    else:
        control = [tc.codec_think_id, tc.codec_think_bos_id, lang_id, tc.codec_think_eos_id]
    codec_rows = [codec_embed(ids([control]))]
    if req.voice is not None:
        codec_rows.append(req.voice.x_vector.to(device=device, dtype=dtype).view(1, 1, -1))
    elif req.speaker:
        codec_rows.append(codec_embed(ids(tc.spk_id[req.speaker.lower()])).view(1, 1, -1))
    codec_rows.append(codec_embed(ids([[tc.codec_pad_id, tc.codec_bos_id]])))
    codec = torch.cat(codec_rows, dim=1)  # [1, L, H]

    role = text_embed(assistant[:, :3])
    prefix = torch.cat((tts_pad.expand(-1, codec.shape[1] - 2, -1), tts_bos), dim=1) + codec[:, :-1]
    embeds = torch.cat((role, prefix), dim=1)

    streaming = req.text_mode == "streaming" if req.text_mode else cfg.tts_model_type == "base"
    shared = embeds.shape[1]
    ref_codes = None
    if req.voice is not None and req.voice.mode == "icl":
        ref_codes = req.voice.ref_codes.to(device)
        ref_text = ids([tokenizer.reference_ids(req.voice.ref_text)])
        rows, trailing = _icl_rows(
            text, ref_text, ref_codes, talker, code_predictor, tts_pad, tts_eos, streaming, cfg
        )
        embeds = torch.cat((embeds, rows), dim=1)
        shared += min(ref_text.shape[1], ref_codes.shape[0] + 1) if streaming else ref_text.shape[1]
    elif streaming:
        embeds = torch.cat((embeds, text_embed(assistant[:, 3:4]) + codec[:, -1:]), dim=1)
        trailing = torch.cat((text_embed(assistant[:, 4:-5]), tts_eos), dim=1)
    else:
        pads = codec_embed(ids([[tc.codec_pad_id] * (text.shape[1] + 1)]))
        body = torch.cat((text_embed(text), tts_eos), dim=1) + pads
        embeds = torch.cat((embeds, body, tts_pad + codec_embed(ids([[tc.codec_bos_id]]))), dim=1)
        trailing = tts_pad
    if req.instruct:
        instruct = text_embed(ids([tokenizer.instruct_ids(req.instruct)]))
        embeds, shared = torch.cat((instruct, embeds), dim=1), shared + instruct.shape[1]
    return Prompt(embeds, trailing[0], tts_pad[0, 0], ref_codes, int(text.shape[1]), shared)


def _icl_rows(text, ref_text, ref_codes, talker, code_predictor, tts_pad, tts_eos, streaming, cfg):
    """ICL tail: (ref transcript ++ text ++ E) against (C(bos) ++ reference frames)."""
    text_rows = torch.cat((talker.text_embed(torch.cat([ref_text, text], dim=-1)), tts_eos), dim=1)  # [1, Lt, H]
    per_codebook = torch.cat(
        (talker.codec_embedding(ref_codes[:, :1]), code_predictor.embed_codes(ref_codes[:, 1:])), dim=1
    )  # [T_ref, 16, H]
    bos = talker.codec_embedding(torch.tensor([[cfg.talker.codec_bos_id]], device=ref_codes.device))
    codec_rows = torch.cat((bos, per_codebook.sum(1).unsqueeze(0)), dim=1)  # [1, Lc, H]
    lt, lc = text_rows.shape[1], codec_rows.shape[1]
    if not streaming:
        pads = talker.codec_embedding(torch.full((1, lt), cfg.talker.codec_pad_id, device=ref_codes.device))
        return torch.cat((text_rows + pads, codec_rows + tts_pad), dim=1), tts_pad
    if lt > lc:
        return text_rows[:, :lc] + codec_rows, text_rows[:, lc:]
    padded = torch.cat([text_rows] + [tts_pad] * (lc - lt), dim=1)
    return padded + codec_rows, tts_pad
