"""Find a checkpoint: a local directory in the official layout, or a Hugging Face Hub id.

Hub downloads go through huggingface_hub (its cache, its progress bars, plus an optional progress
callback). Anything missing ends in one `ModelNotFoundError` that names the missing files and says
how to provide them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REQUIRED_FILES = ("config.json", "model.safetensors", "speech_tokenizer/config.json", "speech_tokenizer/model.safetensors")
TOKENIZER_CHOICES = (("tokenizer.json",), ("vocab.json", "merges.txt"))
DOWNLOAD_PATTERNS = [
    "*.json",
    "*.txt",
    "model.safetensors",
    "speech_tokenizer/*.json",
    "speech_tokenizer/model.safetensors",
]

Progress = Callable[[str, float], None]


class ModelNotFoundError(RuntimeError):
    pass


@dataclass(frozen=True)
class ResolvedModel:
    path: Path
    from_local_dir: bool  # False when it came from a Hub id (matters for the tokenizer regex rule)
    source: str


def missing_files(root: Path) -> list[str]:
    missing = [f for f in REQUIRED_FILES if not (root / f).is_file()]
    if not any(all((root / f).is_file() for f in choice) for choice in TOKENIZER_CHOICES):
        missing.append("tokenizer.json (or vocab.json + merges.txt)")
    return missing


def _how_to_get(source: str) -> str:
    return (
        f"Download it on a machine with internet: `huggingface-cli download {source} --local-dir DIR` "
        "(or `python -c \"from huggingface_hub import snapshot_download as d; "
        f"d('{source}', local_dir='DIR')\"`), then pass --model DIR (or TTS_MODEL_ID=DIR). "
        "For an offline demo, `makima-tts make-tiny-model DIR` writes a small random checkpoint."
    )


def resolve(source: str, progress: Progress | None = None) -> ResolvedModel:
    """Return a local directory holding every file of the checkpoint, downloading from the Hub if needed."""
    path = Path(source).expanduser()
    if path.is_dir():
        missing = missing_files(path)
        if missing:
            raise ModelNotFoundError(
                f"{path} is not a complete Qwen3-TTS 12Hz checkpoint; missing: {', '.join(missing)}. "
                "It must hold the official files (config.json, generation_config.json, tokenizer files, "
                "model.safetensors, speech_tokenizer/)."
            )
        return ResolvedModel(path.resolve(), True, source)
    if source.startswith((".", "/", "~")) or source.count("/") != 1:
        raise ModelNotFoundError(
            f"model {source!r} is neither an existing directory nor a Hub id like 'Qwen/Qwen3-TTS-12Hz-0.6B-Base'."
        )
    return ResolvedModel(_download(source, progress), False, source)


def _download(repo_id: str, progress: Progress | None) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError

    kwargs = {"repo_id": repo_id, "allow_patterns": DOWNLOAD_PATTERNS}
    if progress is not None:
        kwargs["tqdm_class"] = _progress_tqdm(progress)
    try:
        # The operator picks the model (TTS_MODEL_ID, a Hub id or a local directory, where a pinned copy goes);
        # only DOWNLOAD_PATTERNS files are fetched, and weights load through safetensors (no pickle).
        local = Path(snapshot_download(**kwargs))  # nosec B615
    except RepositoryNotFoundError as exc:
        raise ModelNotFoundError(f"the Hub has no model {repo_id!r} (or it is private). Check the id.") from exc
    except (LocalEntryNotFoundError, OSError) as exc:
        try:  # offline: use what the cache already holds
            local = Path(snapshot_download(local_files_only=True, **kwargs))  # nosec B615 (the cache, as above)
        except Exception:
            raise ModelNotFoundError(
                f"could not download {repo_id!r} and it is not in the local Hugging Face cache "
                f"({type(exc).__name__}: the machine is offline or HF_HUB_OFFLINE is set). {_how_to_get(repo_id)}"
            ) from exc
    missing = missing_files(local)
    if missing:
        raise ModelNotFoundError(f"{repo_id} in the cache at {local} lacks {', '.join(missing)}. {_how_to_get(repo_id)}")
    return local


def _progress_tqdm(progress: Progress):
    """A tqdm class that reports the overall download fraction to `progress("download", f)`."""
    from tqdm.auto import tqdm

    class ReportingTqdm(tqdm):
        def update(self, n=1):
            out = super().update(n)
            if self.total:
                progress("download", min(1.0, self.n / self.total))
            return out

    return ReportingTqdm
