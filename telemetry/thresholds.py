"""Alert thresholds and their defaults (a WARNING record and a span event when crossed).
Import-light: the CLI's settings read the defaults before any telemetry starts."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_LATENCY_ALERT_MS = 1000.0
DEFAULT_GPU_TEMPERATURE_ALERT_C = 80.0


@dataclass(frozen=True)
class Thresholds:
    latency_ms: float = DEFAULT_LATENCY_ALERT_MS
    gpu_temperature_c: float = DEFAULT_GPU_TEMPERATURE_ALERT_C
