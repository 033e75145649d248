"""The app's shared state: settings, the model, the voice store and resolver, metrics, limits and the open
sessions. Routes take it as the `ServicesDep` dependency (deps.py); sessions get it at creation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..voices import VoiceResolver, VoiceStore
from .limits import ClientLimits
from .metrics import Metrics
from .model_manager import ModelManager
from .settings import Settings


@dataclass
class Services:
    settings: Settings
    models: ModelManager
    voices: VoiceStore
    resolver: VoiceResolver
    metrics: Metrics
    limits: ClientLimits
    sessions: set[Any] = field(default_factory=set)
    shutting_down: bool = False
