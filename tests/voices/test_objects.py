"""The object store backends against one contract — a directory, and S3 through real servers (rclone, moto):
whole-object writes, conditional create, deletes, listing, and a clear `VoiceStoreUnavailable` when the
store is gone; the start-up probe tells a store that honours conditional writes from one that does not."""

from __future__ import annotations

import pytest

from makima_tts.voices import VoiceStoreUnavailable, open_objects
from makima_tts.voices.dir_objects import DirectoryObjects
from makima_tts.voices.objects import probe_conditional_create
from makima_tts.voices.s3_objects import S3Objects

BACKENDS = ["dir", "rclone", "moto"]


@pytest.fixture(params=BACKENDS)
def backend(request, tmp_path, s3_server):
    """(objects, server or None, how to make the store unreachable)."""
    if request.param == "dir":
        root = tmp_path / "store"
        return DirectoryObjects(root), None, lambda: root.rename(tmp_path / "unmounted")
    server = s3_server(request.param)
    objects = open_objects(server.url(), tmp_path / "unused", addressing_style="path", timeout_s=2)
    return objects, server, server.stop


def test_the_contract(backend):
    objects, server, _ = backend
    assert objects.read("voices/a/voice.json") is None
    objects.write("voices/a/voice.json", b"one")
    objects.write("voices/a/rev/clip.wav", b"\x00" * 70_000)
    objects.write("voices/b/voice.json", b"two")
    objects.write("cache/x", b"elsewhere")
    assert objects.read("voices/a/voice.json") == b"one" and len(objects.read("voices/a/rev/clip.wav")) == 70_000
    assert objects.keys("voices/") == ["voices/a/rev/clip.wav", "voices/a/voice.json", "voices/b/voice.json"]
    assert objects.keys("voices/a/") == ["voices/a/rev/clip.wav", "voices/a/voice.json"]
    objects.write("voices/a/voice.json", b"replaced")
    assert objects.read("voices/a/voice.json") == b"replaced"
    assert objects.create("voices/c/voice.json", b"new") is True
    objects.delete("voices/a/rev/clip.wav")
    objects.delete("voices/a/rev/clip.wav")  # absent: fine
    assert objects.keys("voices/a/") == ["voices/a/voice.json"]
    if server is not None:
        assert server.keys() == ["tts/cache/x", "tts/voices/a/voice.json", "tts/voices/b/voice.json",
                                 "tts/voices/c/voice.json"]  # under the prefix of s3://bucket/tts


def test_conditional_create_and_the_probe(backend):
    objects, server, _ = backend
    honours = server is None or server.honours_conditional_writes
    assert objects.create("voices/d/voice.json", b"first") is True
    assert objects.create("voices/d/voice.json", b"second") is (not honours)
    assert objects.read("voices/d/voice.json") == (b"first" if honours else b"second")
    assert probe_conditional_create(objects, "replica-1") is honours
    assert objects.keys("probe/") == []  # the probe leaves nothing behind


def test_an_unreachable_store_is_a_clear_error(backend):
    objects, _, make_unreachable = backend
    objects.write("voices/e/voice.json", b"{}")
    make_unreachable()
    for attempt in (lambda: objects.read("voices/e/voice.json"), lambda: objects.keys("voices/"),
                    lambda: objects.create("voices/f/voice.json", b"{}"), lambda: objects.write("x", b"")):
        with pytest.raises(VoiceStoreUnavailable) as caught:
            attempt()
        assert objects.where in caught.value.message and caught.value.code == "VOICE_STORE_UNAVAILABLE"


def test_open_objects_reads_the_setting(tmp_path):
    assert isinstance(open_objects("", tmp_path / "data"), DirectoryObjects)
    assert open_objects("", tmp_path / "data").where == str(tmp_path / "data")
    assert open_objects(str(tmp_path / "shared"), tmp_path / "data").where == str(tmp_path / "shared")
    s3 = open_objects("s3://bucket/some/prefix/", tmp_path)
    assert isinstance(s3, S3Objects) and s3.where == "s3://bucket/some/prefix/"
    assert open_objects("s3://bucket", tmp_path).where == "s3://bucket/"
    for bad, message in (("s3://", "name a bucket"), ("gs://b/p", "directory path or s3://")):
        with pytest.raises(ValueError, match=message):
            open_objects(bad, tmp_path)
    with pytest.raises(ValueError, match="bad object key"):
        DirectoryObjects(tmp_path / "d").read("../escape")
