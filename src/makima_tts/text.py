"""Text tokenizer (byte-level BPE) and the chat-style wrappers the talker prompt is built from.

Tokenization matches the official *pipeline* by default. The official wrapper loads the processor
with `fix_mistral_regex=True`, and transformers 4.57.3 then swaps the Qwen2 pre-tokenizer regex for
its "fixed Mistral" regex when the tokenizer is large (vocab > 100000), was loaded from a local
directory, and the checkpoint's `config.json` says `transformers_version` is absent or in
(4.57.2, 5.0). Loading the same weights by Hub id keeps the Qwen2 regex. `regex="official"`
reproduces that rule; "patched" and "qwen2" force one regex. The two only differ on case changes
inside a word ("iPhone" -> " i" + "Phone").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from packaging.version import Version
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

RegexChoice = Literal["official", "patched", "qwen2"]
ASSISTANT_PREFIX = "assistant\n"  # the text after <|im_start|> that the utterance's text continues
ASSISTANT_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n"  # after the text; its last 5 ids are cut off

QWEN2_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
PATCHED_REGEX = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def official_uses_patched_regex(base_vocab_size: int, from_local_dir: bool, transformers_version: str | None) -> bool:
    """The condition under which the official pipeline tokenizes with the patched regex."""
    if base_vocab_size <= 100000 or not from_local_dir:
        return False
    if not transformers_version:
        return True
    v = Version(transformers_version)
    return Version("4.57.2") < v < Version("5.0.0")


def _split(regex: str) -> pre_tokenizers.Split:
    return pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False)


def _from_vocab_and_merges(root: Path) -> Tokenizer:
    """What transformers' slow->fast Qwen2 conversion builds from vocab.json + merges.txt."""
    tok = Tokenizer(models.BPE.from_file(str(root / "vocab.json"), str(root / "merges.txt")))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [_split(QWEN2_REGEX), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    tok.decoder = decoders.ByteLevel()
    config_path = root / "tokenizer_config.json"
    added = json.loads(config_path.read_text()).get("added_tokens_decoder", {}) if config_path.exists() else {}
    for token_id, spec in sorted(added.items(), key=lambda kv: int(kv[0])):
        content = spec["content"]
        token = AddedToken(content, special=spec.get("special", True), normalized=spec.get("normalized", False))
        if spec.get("special", True):
            tok.add_special_tokens([token])
        else:
            tok.add_tokens([token])
        if tok.token_to_id(content) != int(token_id):
            raise ValueError(f"added token {content!r} got id {tok.token_to_id(content)}, expected {token_id}")
    return tok


class TextTokenizer:
    def __init__(self, tokenizer: Tokenizer, use_patched_regex: bool):
        self._tok = tokenizer
        pre = tokenizer.pre_tokenizer
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [_split(PATCHED_REGEX if use_patched_regex else QWEN2_REGEX), pre[1]]
        )
        self.use_patched_regex = use_patched_regex

    @classmethod
    def from_dir(
        cls,
        root: str | Path,
        *,
        regex: RegexChoice = "official",
        from_local_dir: bool = True,
        transformers_version: str | None = None,
    ) -> TextTokenizer:
        root = Path(root)
        if (root / "tokenizer.json").exists():
            tok = Tokenizer.from_file(str(root / "tokenizer.json"))
        elif (root / "vocab.json").exists() and (root / "merges.txt").exists():
            tok = _from_vocab_and_merges(root)
        else:
            raise FileNotFoundError(f"{root} has no tokenizer.json nor vocab.json + merges.txt")
        if regex == "official":
            patched = official_uses_patched_regex(
                tok.get_vocab_size(with_added_tokens=False), from_local_dir, transformers_version
            )
        else:
            patched = regex == "patched"
        return cls(tok, patched)

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def normalize(self, text: str) -> str:
        normalizer = self._tok.normalizer
        return normalizer.normalize_str(text) if normalizer is not None else text

    def chunk_starts(self, normalized: str) -> list[int]:
        """Where each pre-tokenizer chunk of `normalized` begins (BPE never merges across chunks)."""
        return [start for _, (start, _) in self._tok.pre_tokenizer.pre_tokenize_str(normalized)]

    def assistant_ids(self, text: str) -> list[int]:
        """`<|im_start|>assistant\\n{text}<|im_end|>\\n<|im_start|>assistant\\n`: role = [:3], text = [3:-5]."""
        return self.encode(f"<|im_start|>{ASSISTANT_PREFIX}{text}{ASSISTANT_SUFFIX}")

    def text_ends(self, text: str) -> list[int]:
        """For each text id of `assistant_ids(text)` ([3:-5]): where in `text` (characters of the string as
        given, before normalisation) the text up to and including that id ends. A character split over
        several ids counts from its first id on."""
        wrapped = f"<|im_start|>{ASSISTANT_PREFIX}{text}{ASSISTANT_SUFFIX}"
        start, ends, reached = len("<|im_start|>") + len(ASSISTANT_PREFIX), [], 0
        for _, end in self._tok.encode(wrapped, add_special_tokens=False).offsets[3:-5]:
            reached = max(reached, min(max(end - start, 0), len(text)))
            ends.append(reached)
        return ends

    def reference_ids(self, ref_text: str) -> list[int]:
        """The transcript of an ICL reference clip, without its chat wrapper."""
        return self.encode(f"<|im_start|>assistant\n{ref_text}<|im_end|>\n")[3:-2]

    def instruct_ids(self, instruct: str) -> list[int]:
        return self.encode(f"<|im_start|>user\n{instruct}<|im_end|>\n")
