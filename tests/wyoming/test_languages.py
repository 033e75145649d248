"""Language names between the checkpoint (`english`) and Home Assistant's codes (`en`, `en-US`)."""

from makima_tts.wyoming.languages import model_language, wyoming_languages


def test_announced_codes_drop_auto_and_keep_unknown_names():
    assert wyoming_languages(["chinese", "english", "klingon", "auto"]) == ["zh", "en", "klingon"]


def test_requested_languages_map_back_to_the_checkpoint_names():
    assert [model_language(x) for x in ("en", "en-US", "pt_BR", "EN", "english", None, "")] == [
        "english", "english", "portuguese", "english", "english", None, None]
    assert model_language("xx-YY") == "xx-YY"  # the server names the languages it knows
