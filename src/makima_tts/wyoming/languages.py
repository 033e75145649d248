"""Language names: the checkpoint's (`english`) to the ISO 639-1 codes Home Assistant matches (`en`), and
a Wyoming request's language (`en`, `en-US`, `english`) back to the checkpoint's name."""

from __future__ import annotations

ISO_CODES = {"chinese": "zh", "english": "en", "german": "de", "italian": "it", "portuguese": "pt",
             "spanish": "es", "japanese": "ja", "korean": "ko", "french": "fr", "russian": "ru"}
_BY_CODE = {code: name for name, code in ISO_CODES.items()}


def wyoming_languages(model_languages: list[str]) -> list[str]:
    """The codes to announce (`auto` is not a language; a name we have no code for is kept as it is)."""
    return [ISO_CODES.get(name, name) for name in model_languages if name != "auto"]


def model_language(requested: str | None) -> str | None:
    """The checkpoint's name for a requested language (the server rejects what it does not know)."""
    if not requested:
        return None
    primary = requested.strip().lower().replace("_", "-").split("-")[0]
    return _BY_CODE.get(primary, requested)
