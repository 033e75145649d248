"""How much room this replica has, for load balancers: `GET /ready`, the `/metrics` gauges and the HAProxy
agent (`agent.py`) all read one `Capacity`."""

from __future__ import annotations

from dataclasses import dataclass

from .services import Services


@dataclass(frozen=True)
class Capacity:
    accepting: bool  # the model is loaded and the replica is not shutting down
    shutting_down: bool
    engine_slots: int  # utterances the engine generates at once (TTS_MAX_STREAMS)
    free_slots: int
    sessions: int  # open WebSocket sessions
    max_sessions: int

    @property
    def free_share(self) -> float:
        """0..1: the smaller of the free engine slots and the free session places."""
        if not self.engine_slots or not self.max_sessions:
            return 0.0
        return max(0.0, min(self.free_slots / self.engine_slots, 1 - self.sessions / self.max_sessions))

    def agent_reply(self) -> str:
        """HAProxy agent-check: the weight in percent of the configured one (at least 1% while up, so a full
        replica still takes a connection when every other is full too), `drain` while shutting down,
        `down` while the model is not loaded."""
        if self.shutting_down:
            return "drain\n"
        if not self.accepting:
            return "down #model not loaded\n"
        return f"up ready {max(1, round(100 * self.free_share))}%\n"


def capacity(services: Services) -> Capacity:
    models, settings = services.models, services.settings
    engine = models.engine
    busy = engine.busy_streams if engine is not None else 0
    slots = settings.max_streams
    return Capacity(
        accepting=models.loaded and not services.shutting_down,
        shutting_down=services.shutting_down,
        engine_slots=slots,
        free_slots=max(0, slots - busy) if models.loaded else 0,
        sessions=len(services.sessions),
        max_sessions=settings.max_sessions,
    )
