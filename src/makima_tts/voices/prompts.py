"""PromptCache: the computed prompts (`VoicePrompt`) of the voices, per replica, keyed by (voice id, model
fingerprint) and tagged with the voice's revision (a re-created voice of the same id has another one).

A prompt depends on the loaded weights, so the reference clip stays the source of truth and the prompt is
derived from it, kept at two levels:
- memory: an LRU of the `size` most recently used prompts (the bounded local cache of each replica);
- an object (`prompt-<sha256(fingerprint)[:16]>.safetensors`) where the store says: beside an uploaded
  voice's clip in the shared store (created once, never rewritten), or in the replica's local cache
  for a built-in voice.

`files_lock` orders saving a prompt against this replica deleting the voice; `still_current()`, asked
after the save, catches a delete or re-creation by any replica (the object just saved is then removed,
and the prompt neither kept nor saved). Every method but `cached` may touch the store or the model: call
it from a worker thread.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

import numpy as np

from ..voice_prompt import VoicePrompt
from .objects import ObjectStore

SAMPLE_RATE = 24000  # what `create_voice_prompt` takes; stored clips are normalised to it


class PromptModel(Protocol):
    fingerprint: str

    def create_voice_prompt(self, wav: np.ndarray, sr: int, ref_text: str | None) -> VoicePrompt: ...


def prompt_file(fingerprint: str) -> str:
    """The object name of a prompt computed by the weights with this fingerprint."""
    return f"prompt-{hashlib.sha256(fingerprint.encode()).hexdigest()[:16]}.safetensors"


def to_model_rate(wav: np.ndarray, sr: int) -> np.ndarray:
    if sr == SAMPLE_RATE:
        return wav
    from ..audio import resample

    return resample(wav, sr, SAMPLE_RATE)


class PromptCache:
    def __init__(self, size: int = 32):
        self._lru: OrderedDict[tuple[str, str], tuple[str | None, VoicePrompt]] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()  # the LRU
        self.files_lock = threading.Lock()  # this replica deleting a voice vs. saving a prompt of it

    def cached(self, voice_id: str, fingerprint: str, rev: str | None = None) -> VoicePrompt | None:
        """The in-memory prompt if there is one (of revision `rev` when given; cheap: safe on the loop)."""
        with self._lock:
            entry = self._lru.get((voice_id, fingerprint))
            if entry is None or (rev is not None and entry[0] != rev):
                return None
            self._lru.move_to_end((voice_id, fingerprint))
            return entry[1]

    def remember(self, voice_id: str, fingerprint: str, prompt: VoicePrompt, rev: str | None = None) -> None:
        with self._lock:
            self._lru[(voice_id, fingerprint)] = (rev, prompt)
            self._lru.move_to_end((voice_id, fingerprint))
            while len(self._lru) > self._size:
                self._lru.popitem(last=False)

    def forget(self, voice_id: str) -> None:
        """Drop every in-memory prompt of the voice (all fingerprints)."""
        with self._lock:
            for key in [k for k in self._lru if k[0] == voice_id]:
                del self._lru[key]

    def load_or_compute(
        self,
        voice_id: str,
        rev: str | None,
        model: PromptModel,
        *,
        objects: ObjectStore,
        key: str,
        clip: Callable[[], bytes],
        transcript: str | None,
        still_current: Callable[[], bool],
        stale: Callable[[], list[str]] = list,
    ) -> VoicePrompt:
        """The prompt from memory, else the object `key`, else computed from `clip()` and saved at `key`
        (then the keys `stale()` names are removed). When `still_current()` turns false (deleted or
        re-created meanwhile) the prompt is returned but neither kept nor left saved."""
        cached = self.cached(voice_id, model.fingerprint, rev)
        if cached is not None:
            return cached
        prompt = None
        data = objects.read(key)
        if data is not None:
            try:
                prompt = VoicePrompt.from_bytes(data, key)
            except (ValueError, KeyError):
                prompt = None  # a damaged object is recomputed below
        computed = prompt is None
        if computed:
            from ..audio import load_audio

            wav, sr = load_audio(clip())
            prompt = model.create_voice_prompt(to_model_rate(wav, sr), SAMPLE_RATE, transcript)
        with self.files_lock:
            if computed:
                if data is None:
                    objects.create(key, prompt.to_bytes())  # another replica may have made it: same prompt
                else:
                    objects.write(key, prompt.to_bytes())  # replaces a damaged object
            if not still_current():
                if computed:
                    objects.delete(key)
                return prompt
            if computed:
                for old in stale():
                    objects.delete(old)
            self.remember(voice_id, model.fingerprint, prompt, rev)
        return prompt
