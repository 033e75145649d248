"""VoiceResolver: one typed choice per model kind (Clone on Base, PresetSpeaker on CustomVoice, Design on
VoiceDesign), the voice's own language, admission checks that say what to do, one manifest read."""

from __future__ import annotations

import pytest

from makima_tts.model.tts import TTSModel
from makima_tts.tiny import build_tiny_checkpoint
from makima_tts.voices import Clone, Design, PresetSpeaker, VoiceNotFound, VoiceResolver, VoiceStore
from makima_tts.voices.resolve import canonical_language, preset_voice, preset_voices

INSTRUCT = "A calm voice."


@pytest.fixture(scope="module")
def custom_tts(tmp_path_factory) -> TTSModel:
    return TTSModel.load(build_tiny_checkpoint(tmp_path_factory.mktemp("cv"), seed=0, kind="custom_voice"))


@pytest.fixture(scope="module")
def design_tts(tmp_path_factory) -> TTSModel:
    return TTSModel.load(build_tiny_checkpoint(tmp_path_factory.mktemp("vd"), seed=0, kind="voice_design"))


@pytest.fixture
def store(builtin, tmp_path) -> VoiceStore:
    return VoiceStore(builtin, tmp_path / "data")


def resolver(store: VoiceStore, default_voice: str = "narrator", language: str = "auto") -> VoiceResolver:
    return VoiceResolver(store, default_voice=default_voice, default_instruct=INSTRUCT, default_language=language)


def count_reads(store: VoiceStore, monkeypatch) -> list[str]:
    """The ids whose manifest the store reads (built-in or uploaded)."""
    import makima_tts.voices.store as store_module

    reads: list[str] = []
    builtin, uploaded = store_module.builtin_voice, store_module.uploaded_voice
    monkeypatch.setattr(store_module, "builtin_voice", lambda folder: reads.append(folder.name) or builtin(folder))
    monkeypatch.setattr(store_module, "uploaded_voice", lambda vid, data: reads.append(vid) or uploaded(vid, data))
    return reads


def test_base_clones_with_the_voice_language(store, tiny_tts, monkeypatch):
    r = resolver(store)
    reads = count_reads(store, monkeypatch)
    assert r.needs_model_work("narrator", tiny_tts)
    resolved = r.resolve("narrator", tiny_tts)
    assert reads == ["narrator"]  # one manifest read, prompt computed included
    assert isinstance(resolved.choice, Clone) and resolved.choice.prompt.mode == "icl"
    assert resolved.choice.request_fields() == {"voice": resolved.choice.prompt}
    assert resolved.language == "english"  # the manifest's "English", in the checkpoint's spelling
    assert not r.needs_model_work("narrator", tiny_tts)
    assert r.resolve("narrator", tiny_tts).choice.prompt is resolved.choice.prompt  # from memory
    assert reads == ["narrator"] * 2


def test_base_language_falls_back_to_the_default(store, tiny_tts, wav):
    store.add("plain", wav, model=tiny_tts)
    store.add("klingon", wav, model=tiny_tts, language="klingon")
    r = resolver(store, language="german")
    assert r.resolve("plain", tiny_tts).language == "german"  # the manifest names none
    assert r.resolve("klingon", tiny_tts).language == "german"  # one the checkpoint does not know


def test_base_admission(store, tiny_tts):
    r = resolver(store)
    for tts in (tiny_tts, None):  # None: the model is still loading
        r.check("narrator", tts)
        with pytest.raises(VoiceNotFound, match="not provisioned yet: add builtin/pending/reference.wav"):
            r.check("pending", tts)
        with pytest.raises(VoiceNotFound, match=r"'ghost' not found \(GET /api/v1/voices"):
            r.check("ghost", tts)
    with pytest.raises(VoiceNotFound, match="not provisioned yet"):
        r.resolve("pending", tiny_tts)
    with pytest.raises(VoiceNotFound, match="not found"):
        r.resolve("ghost", tiny_tts)


def test_custom_voice_picks_a_speaker(store, custom_tts, monkeypatch):
    r = resolver(store)
    speakers = custom_tts.config.speakers
    reads = count_reads(store, monkeypatch)
    r.check("VIVIAN", custom_tts)
    r.check("narrator", custom_tts)  # the default voice
    assert reads == []  # admission of a speaker reads no manifest
    with pytest.raises(VoiceNotFound, match="choose one of: " + ", ".join(speakers)):
        r.check("pending", custom_tts)
    assert r.resolve("VIVIAN", custom_tts).choice == PresetSpeaker("vivian")
    default = r.resolve("narrator", custom_tts)
    assert default.choice == PresetSpeaker(speakers[0]) and default.language == "english"  # the manifest's
    assert r.resolve("serena", custom_tts).language == "auto"
    assert default.choice.request_fields() == {"speaker": speakers[0]}
    assert not r.needs_model_work("serena", custom_tts)
    with pytest.raises(VoiceNotFound, match="not a speaker of the loaded CustomVoice model"):
        r.resolve("ghost", custom_tts)


def test_voice_design_uses_the_default_instruct(store, design_tts, monkeypatch):
    r = resolver(store, default_voice="house")
    reads = count_reads(store, monkeypatch)
    r.check("house", design_tts)  # the default voice needs no manifest
    assert reads == []
    with pytest.raises(VoiceNotFound, match="not found"):
        r.check("ghost", design_tts)
    resolved = r.resolve("narrator", design_tts)
    assert resolved.choice == Design(INSTRUCT) and resolved.choice.request_fields() == {"instruct": INSTRUCT}
    assert resolved.language == "english"
    assert r.resolve("house", design_tts).language == "auto"
    assert not r.needs_model_work("narrator", design_tts)


def test_preset_voices(custom_tts, tiny_tts):
    presets = preset_voices(custom_tts)
    assert [v.id for v in presets] == [s.lower() for s in custom_tts.config.speakers]
    assert all(v.mode == "preset" and v.built_in and v.language is None for v in presets)
    assert preset_voice("vivian", custom_tts).name == "vivian" and preset_voice("ghost", custom_tts) is None
    assert preset_voices(tiny_tts) == [] and preset_voices(None) == []


def test_canonical_language():
    assert canonical_language(" ENGLISH ", ["english", "auto"]) == "english"
    assert canonical_language(None, ["auto"]) is None
    with pytest.raises(ValueError, match="choose one of: english, auto"):
        canonical_language("elvish", ["english", "auto"])


def test_resolve_and_the_store_share_the_prompt_cache(store, tiny_tts):
    resolved = resolver(store).resolve("narrator", tiny_tts)
    assert store.prompt("narrator", tiny_tts) is resolved.choice.prompt  # `prompt`: the services' callee today
