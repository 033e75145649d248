"""Server settings: the only reader of the environment (prefix `TTS_`, optional `.env` file).

Every field is listed with its default in `.env.example`. Lists (`TTS_ALLOWED_ORIGINS`, `TTS_AUTH_TOKENS`,
`TTS_TRUSTED_PROXIES`) are comma-separated.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

SAMPLE_RATES = (8000, 16000, 22050, 24000, 44100, 48000)
ENCODINGS = ("pcm16", "pcm32f")
AUDIO_TRANSPORTS = ("binary", "base64", "none")


def _repo_voices_dir() -> Path:
    """`voices/` at the repository root when running from a checkout, else `./voices`."""
    checkout = Path(__file__).resolve().parents[3] / "voices"
    return checkout if checkout.is_dir() else Path("voices")


def _default_replica_id() -> str:
    """hostname-pid: unique per process on a host, and the pod name under Kubernetes."""
    return f"{socket.gethostname()}-{os.getpid()}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TTS_", env_file=".env", extra="ignore")

    # model
    model_id: str = "Qwen/Qwen3-TTS-12Hz-0.6B-Base"
    device: str = "auto"
    dtype: str = "auto"
    preload: bool = False
    warmup: bool = True
    max_streams: int = Field(8, ge=1)
    max_frames: int = Field(0, ge=0)  # 0: the engine derives the budget from the text
    admission: Literal["batched", "one_per_step"] = "batched"  # engine/admission.py
    prefill_chunk: int = Field(0, ge=0)  # prompt rows per prefill pass beside running streams; 0: by device
    reuse_prefixes: bool = True  # engine/prefix_cache.py
    first_frames: Literal["apart", "together"] = "apart"  # engine/codec_stage.py
    default_instruct: str = "A calm, clear voice speaking at a natural pace."
    queue_while_loading: bool = True
    loading_retry_after_ms: int = Field(2000, ge=0)

    # network
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    allowed_origins: Annotated[list[str], NoDecode] = []
    auth_tokens: Annotated[list[str], NoDecode] = []
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"

    # voices
    voices_dir: Path = Field(default_factory=_repo_voices_dir)
    data_dir: Path = Path("data")
    default_voice: str = "default"
    default_language: str = "auto"
    # OpenAI voice names to our voice ids, "alloy=serena,echo=my-clone" (README "OpenAI speech API")
    openai_voice_map: Annotated[dict[str, str], NoDecode] = {}
    voice_cache_size: int = Field(32, ge=1)
    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    voice_min_seconds: float = Field(1.0, gt=0)
    voice_max_seconds: float = Field(30.0, gt=0)

    # scale-out (README "Scaling out")
    voice_store: str = ""  # uploaded voices: empty = data_dir; a directory (a shared volume); s3://bucket/prefix
    voice_store_allow_unconditional: bool = False  # accept an S3 server that ignores If-None-Match
    voice_store_timeout_s: float = Field(5.0, gt=0)  # S3 connect/read timeout
    s3_endpoint_url: str = ""  # empty: AWS_ENDPOINT_URL(_S3) or AWS itself
    s3_region: str = ""  # empty: AWS_REGION / AWS_DEFAULT_REGION
    s3_addressing_style: Literal["auto", "path", "virtual"] = "auto"
    replica_id: str = Field(default_factory=_default_replica_id)  # in `ready`, /ready and every log line
    agent_port: int = Field(0, ge=0, le=65535)  # HAProxy agent-check port; 0 = off

    # sessions and limits
    max_message_bytes: int = Field(64 * 1024, ge=1024)
    max_text_chars: int = Field(5000, ge=1)
    idle_timeout_s: float = Field(120.0, gt=0)
    ping_interval_s: float = Field(20.0, gt=0)
    max_sessions: int = Field(64, ge=1)
    max_queued_utterances: int = Field(32, ge=1)
    outbound_queue_messages: int = Field(1024, ge=2)
    shutdown_grace_s: float = Field(5.0, ge=0)
    # streamed text (`speak` with continue:true): "stream" feeds one utterance token by token where the
    # voice's text layout allows it (README "Streaming text input"); "segment" cuts it into sentences
    text_input: Literal["stream", "segment"] = "stream"
    text_open_timeout_s: float = Field(30.0, gt=0)  # an open text that long without more text is closed

    # security (README "Security")
    auth_tokens_file: Path | None = None  # more tokens, one per line (a mounted secret)
    protect_ops: bool = False  # true: /ready and /metrics need a token too
    trusted_proxies: Annotated[list[str], NoDecode] = []  # peers whose X-Forwarded-For names the client
    max_sessions_per_client: int = Field(8, ge=1)
    max_syntheses_per_client: int = Field(4, ge=1)
    voice_uploads_per_hour: int = Field(20, ge=1)

    # the listen page's optional LLM route (server/routes_llm.py)
    llm_proxy_url: str = ""  # an OpenAI-compatible base URL; empty: the route is off
    llm_proxy_key: str = ""
    llm_proxy_model: str = ""  # replaces the page's model name when set

    @field_validator("allowed_origins", "auth_tokens", "trusted_proxies", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("openai_voice_map", mode="before")
    @classmethod
    def _split_pairs(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        pairs = {}
        for entry in filter(None, (part.strip() for part in value.split(","))):
            name, sep, voice = (piece.strip() for piece in entry.partition("="))
            if not sep or not name or not voice:
                raise ValueError(f"openai_voice_map: {entry!r} is not name=voice (e.g. alloy=serena)")
            pairs[name.lower()] = voice
        return pairs

    @field_validator("auth_tokens_file", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("replica_id")
    @classmethod
    def _blank_replica_is_default(cls, value: str) -> str:
        return value.strip() or _default_replica_id()

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        for entry in value:
            if entry != "*":
                try:
                    ipaddress.ip_network(entry, strict=False)
                except ValueError:
                    raise ValueError(f"trusted_proxies: {entry!r} is not an IP address or network (or *)") from None
        return value

    @model_validator(mode="after")
    def _read_tokens_file(self) -> Settings:
        if self.auth_tokens_file is not None:
            try:
                lines = self.auth_tokens_file.read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise ValueError(f"auth_tokens_file: cannot read {self.auth_tokens_file}: {exc.strerror}") from None
            tokens = [line.strip() for line in lines if line.strip()]
            if not tokens:
                raise ValueError(f"auth_tokens_file: {self.auth_tokens_file} holds no token (one per line)")
            self.auth_tokens = [*self.auth_tokens, *tokens]
        return self

    @field_validator("device")
    @classmethod
    def _resolve_device(cls, value: str) -> str:
        if value != "auto":
            return value
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    @field_validator("dtype")
    @classmethod
    def _check_dtype(cls, value: str) -> str:
        if value not in ("auto", "float32", "bfloat16", "float16"):
            raise ValueError("dtype must be auto, float32, bfloat16 or float16")
        return value

    @property
    def resolved_dtype(self) -> str:
        """`auto`: bfloat16 on CUDA and on CPUs with native bf16 (AVX512-BF16/AMX), else float32."""
        if self.dtype != "auto":
            return self.dtype
        if self.device.startswith("cuda"):
            return "bfloat16"
        import torch

        return "bfloat16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "float32"
