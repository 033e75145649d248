"""Prometheus metrics of one app (its own CollectorRegistry: no process globals, many apps per process)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

if TYPE_CHECKING:
    from ..engine.job import FirstAudio
    from .capacity import Capacity

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
        self.first_audio_phases = Histogram(
            "tts_engine_first_audio_phase_seconds",
            "Where the engine's time to first audio goes, per utterance: queued (waiting for the step in flight "
            "or a free slot), prefill (prompt and prefill passes), first_frame (one frame step and its decode)",
            ["phase"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0),
            registry=r,
        )
        self.audio_seconds = Counter("tts_audio_seconds", "Audio generated, in seconds", registry=r)
        self.errors = Counter("tts_errors", "Errors sent to clients, by code", ["code"], registry=r)
        self.model_loaded = Gauge("tts_model_loaded", "1 when the model is loaded", registry=r)
        self.accepting = Gauge("tts_accepting", "1 while ready: model loaded, not shutting down", registry=r)
        self.engine_slots = Gauge("tts_engine_slots", "Utterances the engine generates at once", registry=r)
        self.engine_slots_free = Gauge("tts_engine_slots_free", "Engine slots free right now", registry=r)
        self.sessions_max = Gauge("tts_sessions_max", "Open WebSocket sessions allowed (TTS_MAX_SESSIONS)",
                                  registry=r)

    def observe_capacity(self, room: Capacity) -> None:
        """The room gauges, read when scraped (`tts_sessions_active` is kept by the sessions themselves)."""
        self.accepting.set(1 if room.accepting else 0)
        self.engine_slots.set(room.engine_slots)
        self.engine_slots_free.set(room.free_slots)
        self.sessions_max.set(room.max_sessions)

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

    def observe_first_audio(self, phases: FirstAudio) -> None:
        """An engine job's first frame went out (called on the engine's codec thread)."""
        for phase, seconds in phases._asdict().items():
            self.first_audio_phases.labels(phase=phase).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
