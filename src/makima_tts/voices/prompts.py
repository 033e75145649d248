"""PromptCache: the computed prompts (`VoicePrompt`) of the voices, keyed by (voice id, model fingerprint).

A prompt depends on the loaded weights, so the reference clip stays the source of truth and the prompt is
derived from it, kept at two levels:
- memory: an LRU of the `size` most recently used prompts;
- disk: one `prompt-<sha256(fingerprint)[:16]>.safetensors` in the folder the store names for the voice
  (an uploaded voice: its own folder; a built-in one: `DATA_DIR/cache/builtin/<id>/`); a prompt for other
  weights replaces it; written atomically (a temporary file renamed into place).

`files_lock` orders saving a prompt into a voice's folder against the store deleting that folder. Every
method but `cached` may touch the disk or the model: call it from a worker thread.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
from safetensors import SafetensorError

from ..voice_prompt import VoicePrompt

SAMPLE_RATE = 24000  # what `create_voice_prompt` takes; stored clips are normalised to it


class PromptModel(Protocol):
    fingerprint: str

    def create_voice_prompt(self, wav: np.ndarray, sr: int, ref_text: str | None) -> VoicePrompt: ...


def prompt_file(fingerprint: str) -> str:
    """The file name of a prompt computed by the weights with this fingerprint."""
    return f"prompt-{hashlib.sha256(fingerprint.encode()).hexdigest()[:16]}.safetensors"


def to_model_rate(wav: np.ndarray, sr: int) -> np.ndarray:
    if sr == SAMPLE_RATE:
        return wav
    from ..audio import resample

    return resample(wav, sr, SAMPLE_RATE)


class PromptCache:
    def __init__(self, size: int = 32):
        self._lru: OrderedDict[tuple[str, str], VoicePrompt] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()  # the LRU
        self.files_lock = threading.Lock()  # the store deleting a voice vs. saving a prompt into its folder

    def cached(self, voice_id: str, fingerprint: str) -> VoicePrompt | None:
        """The in-memory prompt if there is one (cheap: safe to call on the event loop)."""
        with self._lock:
            prompt = self._lru.get((voice_id, fingerprint))
            if prompt is not None:
                self._lru.move_to_end((voice_id, fingerprint))
            return prompt

    def remember(self, voice_id: str, fingerprint: str, prompt: VoicePrompt) -> None:
        with self._lock:
            self._lru[(voice_id, fingerprint)] = prompt
            self._lru.move_to_end((voice_id, fingerprint))
            while len(self._lru) > self._size:
                self._lru.popitem(last=False)

    def forget(self, voice_id: str) -> None:
        """Drop every in-memory prompt of the voice (all fingerprints); call it holding `files_lock`."""
        with self._lock:
            for key in [k for k in self._lru if k[0] == voice_id]:
                del self._lru[key]

    def load_or_compute(
        self,
        voice_id: str,
        folder: Path,
        model: PromptModel,
        *,
        clip: Path,
        transcript: str | None,
        still_current: Callable[[], bool],
    ) -> VoicePrompt:
        """The prompt from memory, else `folder`'s saved file, else computed from `clip` and saved there.
        `still_current()` (asked under `files_lock`) says whether the voice is still the one we started from:
        when it is not (deleted or re-created meanwhile), the prompt is returned but neither saved nor kept."""
        cached = self.cached(voice_id, model.fingerprint)
        if cached is not None:
            return cached
        path = folder / prompt_file(model.fingerprint)
        prompt = None
        if path.is_file():
            try:
                prompt = VoicePrompt.load(path)
            except (OSError, ValueError, KeyError, SafetensorError):
                prompt = None  # a damaged file is recomputed below
        computed = prompt is None
        if computed:
            from ..audio import load_audio

            wav, sr = load_audio(clip)
            prompt = model.create_voice_prompt(to_model_rate(wav, sr), SAMPLE_RATE, transcript)
        with self.files_lock:
            if not still_current():
                return prompt
            if computed:
                _replace_saved(folder, path, prompt)
            self.remember(voice_id, model.fingerprint, prompt)
        return prompt


def _replace_saved(folder: Path, path: Path, prompt: VoicePrompt) -> None:
    """Save `prompt` at `path` atomically, removing the prompts of other weights."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("prompt-*.safetensors"):
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".safetensors")
    os.close(fd)
    try:
        prompt.save(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
