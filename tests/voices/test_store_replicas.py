"""VoiceStore as several replicas share it (one `VoiceStore` per replica on one backend: a directory, and
real S3 servers): racing uploads of one id have exactly one winner, a voice made or deleted by one is seen
by the other on its next use, a store that ignores conditional writes is refused at start-up (or accepted
when told to), and an unreachable store fails uploaded voices clearly while built-in ones keep working."""

from __future__ import annotations

import threading

import pytest
from voices_helpers import CountingModel

from makima_tts.voices import VoiceExists, VoiceNotFound, VoiceStore, VoiceStoreUnavailable, open_objects


def replicas(kind, builtin, tmp_path, s3_server, count=2, **options) -> tuple[list[VoiceStore], object]:
    server = None
    if kind == "dir":
        url = str(tmp_path / "shared")
    else:
        server = s3_server(kind)
        url = server.url()
    stores = [VoiceStore(builtin, tmp_path / f"replica-{i}", allow_unconditional=kind == "rclone",
                         objects=open_objects(url, tmp_path, addressing_style="path", timeout_s=2), **options)
              for i in range(count)]
    for i, store in enumerate(stores):
        store.verify_store(f"replica-{i}")
    return stores, server


@pytest.mark.parametrize("kind", ["dir", "moto"])
def test_racing_uploads_of_one_id_have_one_winner(kind, builtin, tmp_path, s3_server, wav):
    stores, _ = replicas(kind, builtin, tmp_path, s3_server)
    assert all(s.conditional_writes for s in stores)
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def upload(store: VoiceStore, n: int) -> None:
        barrier.wait(30)
        try:
            store.add("contested", wav, model=CountingModel("w"), name=f"take {n}")
            outcomes.append(f"201 take {n}")
        except VoiceExists:
            outcomes.append("409")

    threads = [threading.Thread(target=upload, args=(stores[n % 2], n)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    winners = [o for o in outcomes if o.startswith("201")]
    assert len(outcomes) == 8 and len(winners) == 1 and outcomes.count("409") == 7
    for store in stores:  # both replicas see the winner, whole
        voice = store.get("contested")
        assert f"201 {voice.name}" == winners[0] and store.clip(voice)[:4] == b"RIFF"
    keys = stores[0].objects.keys("voices/contested/")
    assert len(keys) == 3  # manifest, the winner's clip and prompt: the losers left nothing behind


@pytest.mark.parametrize("kind", ["dir", "moto", "rclone"])
def test_one_replicas_voice_is_the_others_at_once(kind, builtin, tmp_path, s3_server, wav):
    (a, b), _ = replicas(kind, builtin, tmp_path, s3_server)
    model = CountingModel("w")
    a.add("shared", wav, model=model, transcript="Shared words.")
    assert b.prompt("shared", model).ref_text == "Shared words." and model.calls == 1  # a's saved prompt
    assert [v.id for v in b.list()][-1] == "shared"
    a.delete("shared")
    assert b.cached_prompt("shared", "w") is not None  # still in b's memory, but:
    with pytest.raises(VoiceNotFound):
        b.get("shared")  # every use reads the manifest
    a.add("shared", wav, model=CountingModel("w"))  # made again: another revision
    again = b.prompt("shared", model)  # not the old revision's prompt still in b's memory
    assert again.mode == "xvector" and again.ref_text is None
    assert b.prompts.cached("shared", "w", b.get("shared").rev) is again


def test_a_store_that_ignores_conditional_writes_is_refused(builtin, tmp_path, s3_server, wav, caplog):
    server = s3_server("rclone")
    objects = open_objects(server.url(), tmp_path, addressing_style="path", timeout_s=2)
    strict = VoiceStore(builtin, tmp_path / "a", objects=objects)
    with pytest.raises(VoiceStoreUnavailable, match="ignores conditional writes.*TTS_VOICE_STORE_ALLOW_UNCONDITIONAL"):
        strict.verify_store("a")
    with pytest.raises(VoiceStoreUnavailable, match="ignores conditional writes"):
        strict.add("never", wav, model=CountingModel("w"))
    assert server.keys() == []
    lenient = VoiceStore(builtin, tmp_path / "b", objects=objects, allow_unconditional=True)
    lenient.verify_store("b")
    assert "ignores conditional writes" in caplog.text
    lenient.add("best-effort", wav, model=CountingModel("w"))
    with pytest.raises(VoiceExists):
        lenient.add("best-effort", wav, model=CountingModel("w"))  # seen before writing


@pytest.mark.parametrize("kind", ["dir", "moto"])
def test_an_unreachable_store_fails_uploaded_voices_only(kind, builtin, tmp_path, s3_server, wav):
    (store,), server = replicas(kind, builtin, tmp_path, s3_server, count=1)
    store.add("remote", wav, model=CountingModel("w"))
    if server is not None:
        server.stop()
    else:
        (tmp_path / "shared").rename(tmp_path / "unmounted")
    for attempt in (store.list, lambda: store.get("remote"), lambda: store.check_free("new"),
                    lambda: store.delete("remote")):
        with pytest.raises(VoiceStoreUnavailable, match="voice store"):
            attempt()
    assert store.get("narrator").built_in and store.prompt("narrator", CountingModel("w")).mode == "icl"
