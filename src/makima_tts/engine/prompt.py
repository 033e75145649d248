"""Talker prompts for every mode: prefill rows and the trailing text fed one row per generated frame.

Each row is text track + codec track (qwen3-tts-reference.md section 5). Layout, with P/B/E the
projected tts_pad/tts_bos/tts_eos text vectors and C() the talker codec embedding:

    [instruct rows]  role(3)  P+C(think..)  ...  P+C(spk)  B+C(pad)  <tail>

tail, streaming text:      T[0] + C(bos)                     trailing = T[1:] ++ E
tail, non-streaming text:  (T ++ E) + C(pad) ..., P + C(bos)  trailing = P
tail, ICL:                 (ref_text ++ T ++ E) mixed with C(bos) ++ sum-of-16(ref codes), see `_icl_rows`

The trailing text is a `TextFeed` (text_feed.py). In the streaming layouts the prefill needs only the
first text token(s) (`prefill_text_tokens`), so a prompt can be built while the text is still arriving
(`PromptText.open`): the feed then grows as tokens come and gets `E` when the text closes. The tensor
calls mirror the official ones in shape so fp32 results agree bit for bit where possible; the trailing
rows are the exception: embedded one token at a time (text_feed.py says why), they agree within 1e-6.

The first `Prompt.shared_rows` rows depend on the voice, language, instruct and text mode only, never on
the utterance's text (prefix_cache.py reuses their keys/values): [instruct rows] role ... B+C(pad) in
every layout, and for ICL also the rows pairing the reference transcript with C(bos) and the first
reference frames (streaming) or with C(pad) (non-streaming); from the first target-text token on, every
row (and so every later key/value) depends on the text.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import ModelConfig
from ..text import TextTokenizer
from .text_feed import TextFeed
from .types import SpeechRequest


class PromptError(ValueError):
    """The request cannot be turned into a prompt for this model (message says what to change)."""


@dataclass
class Prompt:
    embeds: torch.Tensor  # [1, P, H] prefill rows
    feed: TextFeed  # the text rows of generation steps 0, 1, ... (then `P`)
    ref_codes: torch.Tensor | None  # [T_ref, 16] (ICL: the codec is primed with these)
    text_tokens: int  # number of text tokens of the utterance so far (drives the frame budget)
    shared_rows: int = 0  # leading rows of `embeds` that do not depend on the text (see the module docstring)


@dataclass(frozen=True)
class PromptText:
    """An utterance's tokenized text: the role ids (`<|im_start|>assistant\\n`, 3 tokens) and the text's
    ids; `open`: more text follows (streaming layouts only)."""

    role: list[int]
    ids: list[int]
    open: bool = False

    @classmethod
    def whole(cls, tokenizer: TextTokenizer, text: str) -> PromptText:
        assistant = tokenizer.assistant_ids(text)
        return cls(assistant[:3], assistant[3:-5])


def streams_text(req: SpeechRequest, cfg: ModelConfig) -> bool:
    """Whether the utterance uses a streaming-text layout (one text row per frame)."""
    return req.text_mode == "streaming" if req.text_mode else cfg.tts_model_type == "base"


def prefill_text_tokens(req: SpeechRequest, cfg: ModelConfig, tokenizer: TextTokenizer) -> int | None:
    """How many text tokens the prefill takes in the streaming layout (its prompt can be built once they
    are known), or None when the layout takes the whole text up front (non-streaming text)."""
    if not streams_text(req, cfg):
        return None
    if req.voice is not None and req.voice.mode == "icl":  # Lt > Lc needs ref_text ++ T to fill the Lc rows
        return max(1, req.voice.ref_codes.shape[0] + 1 - len(tokenizer.reference_ids(req.voice.ref_text)))
    return 1


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


def build_prompt(req: SpeechRequest, cfg: ModelConfig, tokenizer: TextTokenizer, talker, code_predictor,
                 text: PromptText | None = None) -> Prompt:
    """`text`: the tokenized text (default: `req.text` whole); an open one needs at least
    `prefill_text_tokens` text ids."""
    _check_voice(cfg, req)
    if text is None:
        if not req.text or not req.text.strip():
            raise PromptError("text is empty")
        text = PromptText.whole(tokenizer, req.text)
    if not text.ids and not text.open:
        raise PromptError("text is empty after tokenization")
    streaming = streams_text(req, cfg)
    if text.open and not streaming:
        raise PromptError("non-streaming text mode takes the whole text at once")
    tc = cfg.talker
    device = talker.codec_embedding.weight.device
    dtype = talker.codec_embedding.weight.dtype

    def ids(values) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.long, device=device)

    text_embed, codec_embed = talker.text_embed, talker.codec_embedding

    @torch.inference_mode()
    def embed_one(token: int) -> torch.Tensor:
        return text_embed(ids([[token]]))[0, 0]  # [H]

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

    role = text_embed(ids([text.role]))
    prefix = torch.cat((tts_pad.expand(-1, codec.shape[1] - 2, -1), tts_bos), dim=1) + codec[:, :-1]
    embeds = torch.cat((role, prefix), dim=1)

    ref_codes, eos, pad = None, tts_eos[0, 0], tts_pad[0, 0]
    shared = embeds.shape[1]
    if req.voice is not None and req.voice.mode == "icl":
        ref_codes = req.voice.ref_codes.to(device)
        all_ids = tokenizer.reference_ids(req.voice.ref_text) + text.ids
        rows, trailing = _icl_rows(all_ids, ref_codes, talker, code_predictor, tts_pad, tts_eos, streaming, cfg)
        embeds = torch.cat((embeds, rows), dim=1)
        if text.open and not trailing:
            raise PromptError("an open ICL text needs the tokens of its first rows (prefill_text_tokens)")
        ref_len = len(all_ids) - len(text.ids)
        in_prefill = rows.shape[1]  # of all_ids, when text follows the rows
        feed = TextFeed(embed_one, all_ids[in_prefill:], eos, pad, text.open, read_before=max(0, in_prefill - ref_len),
                        foreign=max(0, ref_len - in_prefill)) if trailing else None
        shared += min(ref_len, ref_codes.shape[0] + 1) if streaming else ref_len
    elif streaming:
        embeds = torch.cat((embeds, text_embed(ids([text.ids[:1]])) + codec[:, -1:]), dim=1)
        feed = TextFeed(embed_one, text.ids[1:], eos, pad, text.open, read_before=1)
    else:
        pads = codec_embed(ids([[tc.codec_pad_id] * (len(text.ids) + 1)]))
        body = torch.cat((text_embed(ids([text.ids])), tts_eos), dim=1) + pads
        embeds = torch.cat((embeds, body, tts_pad + codec_embed(ids([[tc.codec_bos_id]]))), dim=1)
        feed = None
    if req.instruct:
        instruct = text_embed(ids([tokenizer.instruct_ids(req.instruct)]))
        embeds, shared = torch.cat((instruct, embeds), dim=1), shared + instruct.shape[1]
    feed = feed or TextFeed(embed_one, [], None, pad, read_before=len(text.ids))  # the whole text is in the prefill
    return Prompt(embeds, feed, ref_codes, len(text.ids), shared)


def _icl_rows(all_ids, ref_codes, talker, code_predictor, tts_pad, tts_eos, streaming, cfg):
    """ICL tail: (ref transcript ++ text ++ E) against (C(bos) ++ reference frames) -> (rows [1, R, H],
    whether text follows them: then the trailing text is `all_ids[R:]` ++ E, else `P`)."""
    per_codebook = torch.cat(
        (talker.codec_embedding(ref_codes[:, :1]), code_predictor.embed_codes(ref_codes[:, 1:])), dim=1
    )  # [T_ref, 16, H]
    bos = talker.codec_embedding(torch.tensor([[cfg.talker.codec_bos_id]], device=ref_codes.device))
    codec_rows = torch.cat((bos, per_codebook.sum(1).unsqueeze(0)), dim=1)  # [1, Lc, H]
    lt, lc = len(all_ids) + 1, codec_rows.shape[1]
    ids = torch.tensor([all_ids], dtype=torch.long, device=ref_codes.device)
    if streaming and lt > lc:  # only the Lc rows of the prefill embedded together: the rest is the feed's
        return talker.text_embed(ids[:, :lc]) + codec_rows, True
    text_rows = torch.cat((talker.text_embed(ids), tts_eos), dim=1)  # [1, Lt, H]
    if not streaming:
        pads = talker.codec_embedding(torch.full((1, lt), cfg.talker.codec_pad_id, device=ref_codes.device))
        return torch.cat((text_rows + pads, codec_rows + tts_pad), dim=1), False
    padded = torch.cat([text_rows] + [tts_pad] * (lc - lt), dim=1)
    return padded + codec_rows, False
