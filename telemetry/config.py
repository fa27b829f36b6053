"""Every `OTEL_*` variable wwts reads, and every default it applies to them, in one place.

The SDK and the OTLP exporters read the same variables themselves (endpoint paths,
headers, TLS, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`); what wwts decides on top
is which exporter runs for a signal, and a bounded export timeout, so that a collector
that is down costs a run seconds rather than a minute of retries.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from opentelemetry.environment_variables import OTEL_METRICS_EXPORTER, OTEL_TRACES_EXPORTER
from opentelemetry.sdk.environment_variables import (
    OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_EXPORTER_OTLP_HEADERS,
    OTEL_EXPORTER_OTLP_METRICS_ENDPOINT,
    OTEL_EXPORTER_OTLP_METRICS_HEADERS,
    OTEL_EXPORTER_OTLP_METRICS_PROTOCOL,
    OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE,
    OTEL_EXPORTER_OTLP_METRICS_TIMEOUT,
    OTEL_EXPORTER_OTLP_PROTOCOL,
    OTEL_EXPORTER_OTLP_TIMEOUT,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    OTEL_EXPORTER_OTLP_TRACES_HEADERS,
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
    OTEL_EXPORTER_OTLP_TRACES_TIMEOUT,
    OTEL_METRIC_EXPORT_INTERVAL,
)
from opentelemetry.util.re import parse_env_headers

# exporter kinds for a signal: the standard values, plus `file` (our local OTLP-JSON
# file), chosen when nothing is configured
OTLP, CONSOLE, NONE, FILE = "otlp", "console", "none", "file"
DEFAULT_PROTOCOL = "grpc"
DEFAULT_GRPC_ENDPOINT = "http://localhost:4317"
DEFAULT_HTTP_ENDPOINT = "http://localhost:4318"
# The instrumentations' switch to the stable HTTP semantic conventions (`http.request.method`,
# `http.response.status_code`, the `http.server.request.duration` histogram)
SEMCONV_STABILITY_OPT_IN, STABLE_HTTP = "OTEL_SEMCONV_STABILITY_OPT_IN", "http"
EXPORT_TIMEOUT_S = 2.0  # collector down: a bounded wait, never a minute of retries
DEFAULT_METRIC_INTERVAL_MS = 60_000  # the specification's default
# temporality preference for exported metrics: the specification's three values. The
# default is delta, not the specification's cumulative: the collector's Elasticsearch
# exporter drops cumulative histograms, and delta points add up in Kibana.
CUMULATIVE, DELTA, LOW_MEMORY = "cumulative", "delta", "lowmemory"
DEFAULT_METRIC_TEMPORALITY = DELTA


@dataclass(frozen=True)
class SignalConfig:
    """How one signal (traces or metrics) leaves the process."""

    kind: str  # otlp | console | none | file
    endpoint: str | None  # as configured; for kind otlp without one, the protocol's default
    signal_specific: bool  # the endpoint came from OTEL_EXPORTER_OTLP_<SIGNAL>_ENDPOINT (a full URL)
    protocol: str  # grpc | http/protobuf | http/json
    timeout_s: float | None  # None: the user set one, the exporter reads it itself
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # may hold credentials

    @property
    def headers_set(self) -> bool:
        return bool(self.headers)

    @property
    def http(self) -> bool:
        return self.protocol.startswith("http")

    def http_url(self, path: str) -> str | None:
        """The OTLP/HTTP URL for this signal (`path` such as "v1/traces"), the way the
        exporters build it: a signal-specific endpoint is used as given."""
        if self.endpoint is None:
            return None
        return self.endpoint if self.signal_specific else f"{self.endpoint.rstrip('/')}/{path}"


@dataclass(frozen=True)
class OtelConfig:
    traces: SignalConfig
    metrics: SignalConfig
    metric_interval_ms: int
    metric_temporality: str = DEFAULT_METRIC_TEMPORALITY  # cumulative | delta | lowmemory

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OtelConfig:
        env = os.environ if environ is None else environ
        return cls(
            traces=_signal(
                env, OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
                OTEL_EXPORTER_OTLP_TRACES_HEADERS, OTEL_EXPORTER_OTLP_TRACES_TIMEOUT,
            ),
            metrics=_signal(
                env, OTEL_METRICS_EXPORTER, OTEL_EXPORTER_OTLP_METRICS_ENDPOINT, OTEL_EXPORTER_OTLP_METRICS_PROTOCOL,
                OTEL_EXPORTER_OTLP_METRICS_HEADERS, OTEL_EXPORTER_OTLP_METRICS_TIMEOUT,
            ),
            metric_interval_ms=int(_number(env, OTEL_METRIC_EXPORT_INTERVAL, DEFAULT_METRIC_INTERVAL_MS)),
            metric_temporality=_choice(
                env, OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE, (CUMULATIVE, DELTA, LOW_MEMORY),
                DEFAULT_METRIC_TEMPORALITY,
            ),
        )


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...], default: str) -> str:
    value = (_get(env, name) or "").lower()
    return value if value in allowed else default


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = _get(env, name)
    try:
        return float(raw) if raw else default
    except ValueError:
        return default


def _signal(
    env: Mapping[str, str], exporter: str, endpoint: str, protocol: str, headers: str, timeout: str
) -> SignalConfig:
    chosen = (_get(env, exporter) or "").split(",")[0].strip().lower()
    specific = _get(env, endpoint)
    configured = specific or _get(env, OTEL_EXPORTER_OTLP_ENDPOINT)
    kind = chosen if chosen in (OTLP, CONSOLE, NONE) else (OTLP if configured else FILE)
    proto = (_get(env, protocol) or _get(env, OTEL_EXPORTER_OTLP_PROTOCOL) or DEFAULT_PROTOCOL).lower()
    default = DEFAULT_HTTP_ENDPOINT if proto.startswith("http") else DEFAULT_GRPC_ENDPOINT
    user_timeout = _get(env, timeout) or _get(env, OTEL_EXPORTER_OTLP_TIMEOUT)
    return SignalConfig(
        kind=kind,
        endpoint=configured or (default if kind == OTLP else None),
        signal_specific=bool(specific),
        protocol=proto,
        timeout_s=None if user_timeout else EXPORT_TIMEOUT_S,
        headers=tuple(parse_env_headers(_get(env, headers) or _get(env, OTEL_EXPORTER_OTLP_HEADERS) or "", liberal=True).items()),
    )


def prefer_stable_http_conventions() -> None:
    """Unless the user chose otherwise, instrumentations emit the stable HTTP conventions
    (they read the variable when they instrument, so call this before)."""
    os.environ.setdefault(SEMCONV_STABILITY_OPT_IN, STABLE_HTTP)
