"""The model's lifecycle inside the server: not_loaded → loading → loaded (or back to not_loaded on failure).

Loading happens once, lazily on first need (or at start-up with `TTS_PRELOAD`), in a worker thread; the
event loop only awaits it. The same single worker thread runs the other blocking model work that is not
synthesis (warm-up, voice-prompt encoding), so none of it ever runs on the loop. Synthesis itself runs
in the engine's own thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..voices.resolve import canonical_language
from .settings import Settings

if TYPE_CHECKING:
    from ..engine.engine import Engine
    from ..engine.job import FirstAudio
    from ..model.tts import TTSModel

log = logging.getLogger(__name__)
ModelState = Literal["loaded", "loading", "not_loaded"]
WARMUP_SHARE = 0.1  # the last tenth of the progress figure is the warm-up


class ModelUnavailable(RuntimeError):
    """Loading failed; the message says why and what to do. The next request tries again."""


class ModelManager:
    def __init__(self, settings: Settings, after_load: Callable[[TTSModel], None] | None = None,
                 on_first_audio: Callable[[FirstAudio], None] | None = None):
        self.settings = settings
        self.after_load = after_load  # blocking follow-up on the loaded model (e.g. the default voice's prompt)
        self.on_first_audio = on_first_audio  # the engine's first-audio phases (metrics)
        self.state: ModelState = "not_loaded"
        self.progress = 0.0
        self.message = "model not loaded yet (it loads on the first request)"
        self.error: str | None = None
        self.tts: TTSModel | None = None
        self.engine: Engine | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-work")
        self._task: asyncio.Task[None] | None = None
        self._dir_languages: list[str] | None = None

    @property
    def loaded(self) -> bool:
        return self.state == "loaded"

    def status(self) -> dict[str, Any]:
        return {
            "modelState": self.state,
            "progress": round(self.progress, 3),
            "message": self.message,
            "error": self.error,
            "model": self.settings.model_id,
            "device": self.settings.device,
            "dtype": self.settings.resolved_dtype,
        }

    def canonical_language(self, language: str | None) -> str | None:
        """The checkpoint's spelling of `language` (case-insensitive), or ValueError naming the choices."""
        return canonical_language(language, self.languages())

    def languages(self) -> list[str]:
        """The checkpoint's languages: from the loaded model, else from a local directory's config."""
        if self.tts is not None:
            return list(self.tts.config.languages)
        if self._dir_languages is None:
            self._dir_languages = ["auto"]
            root = Path(self.settings.model_id).expanduser()
            if (root / "config.json").is_file():
                try:
                    from ..config import load_model_config

                    self._dir_languages = list(load_model_config(root).languages)
                except (OSError, ValueError, KeyError):
                    pass
        return self._dir_languages

    def start_loading(self) -> asyncio.Task[None]:
        """Begin loading unless loaded or already loading; returns the task to await."""
        if self._task is None or (self._task.done() and self.state != "loaded"):
            self._task = asyncio.get_running_loop().create_task(self._load())
        return self._task

    async def wait_loaded(self) -> tuple[TTSModel, Engine]:
        if self.state != "loaded":
            await asyncio.shield(self.start_loading())
        if self.tts is None or self.engine is None:
            raise ModelUnavailable(self.error or "the model is not loaded")
        return self.tts, self.engine

    async def run_blocking(self, fn, *args):
        """Run blocking model work (voice prompts) on the model-work thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _load(self) -> None:
        self.state, self.progress, self.error = "loading", 0.0, None
        self.message = f"loading {self.settings.model_id}"
        try:
            await self.run_blocking(self._load_blocking)
        except Exception as exc:  # any failure leaves a clear message and a retry on the next request
            log.error("model load failed: %s", exc)
            self.state, self.progress = "not_loaded", 0.0
            self.error = self.message = f"model load failed: {exc}"
            return
        self.state, self.progress, self.message = "loaded", 1.0, "model loaded"

    def _load_blocking(self) -> None:
        from ..engine.admission import AdmissionPolicy
        from ..engine.codec_stage import FirstFrames
        from ..engine.engine import Engine
        from ..model.tts import TTSModel

        def on_progress(stage: str, fraction: float) -> None:
            self.message = stage
            self.progress = max(0.0, min(1.0, fraction)) * (1.0 - WARMUP_SHARE)

        s = self.settings
        tts = TTSModel.load(s.model_id, device=s.device, dtype=s.resolved_dtype, progress=on_progress)
        engine = Engine(tts, max_streams=s.max_streams, admission=AdmissionPolicy(s.admission),
                        prefill_chunk=s.prefill_chunk or None, reuse_prefixes=s.reuse_prefixes,
                        first_frames=FirstFrames(s.first_frames), on_first_audio=self.on_first_audio)
        if s.warmup:
            self.message, self.progress = "warming up", 1.0 - WARMUP_SHARE
            try:
                engine.warmup()
            except BaseException:
                engine.close()
                raise
        if self.after_load is not None:
            self.message = "preparing the default voice"
            try:
                self.after_load(tts)
            except Exception as exc:  # the model is usable; the voice reports its own error when asked for
                log.warning("after-load step failed: %s", exc)
        self.tts, self.engine = tts, engine

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            await asyncio.wait([self._task], timeout=30)
        if self.engine is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.engine.close)
            self.engine = None
        self._executor.shutdown(wait=False, cancel_futures=True)
