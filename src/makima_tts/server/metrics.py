"""Prometheus metrics of one app (its own CollectorRegistry: no process globals, many apps per process)."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.sessions_active = Gauge("tts_sessions_active", "Open WebSocket sessions", registry=r)
        self.sessions_total = Counter("tts_sessions", "WebSocket sessions accepted", registry=r)
        self.utterances = Counter(
            "tts_utterances", "Finished utterances by outcome", ["outcome", "transport"], registry=r
        )
        self.ttfa = Histogram(
            "tts_time_to_first_audio_seconds",
            "From the start of synthesis to the first audio frame",
            buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0),
            registry=r,
        )
        self.rtf = Histogram(
            "tts_real_time_factor",
            "Engine time divided by audio duration, per utterance (below 1 is faster than real time)",
            buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0),
            registry=r,
        )
        self.audio_seconds = Counter("tts_audio_seconds", "Audio generated, in seconds", registry=r)
        self.errors = Counter("tts_errors", "Errors sent to clients, by code", ["code"], registry=r)
        self.model_loaded = Gauge("tts_model_loaded", "1 when the model is loaded", registry=r)

    def observe_utterance(
        self, outcome: str, transport: str, ttfa_s: float | None, engine_s: float, audio_s: float
    ) -> None:
        self.utterances.labels(outcome=outcome, transport=transport).inc()
        if ttfa_s is not None:
            self.ttfa.observe(ttfa_s)
        if audio_s > 0:
            self.audio_seconds.inc(audio_s)
            if outcome == "complete":
                self.rtf.observe(engine_s / audio_s)

    def render(self) -> bytes:
        return generate_latest(self.registry)
