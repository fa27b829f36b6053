"""Build the tracer provider from the standard `OTEL_*` variables.

`OTEL_TRACES_EXPORTER` picks `otlp`, `console` or `none`; unset, it is `otlp` when an
OTLP endpoint is configured and otherwise a local OTLP-JSON file in the log directory,
so a run with no servers still leaves a trace to read.
"""

from __future__ import annotations

import os
import platform
import socket
from dataclasses import dataclass
from pathlib import Path

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)

from telemetry.otlp_file import OtlpJsonFileExporter

DEFAULT_SERVICE = "wwts"
EXPORT_TIMEOUT_S = 2.0  # collector down: a bounded wait, never a minute of retries
QUEUE_SIZE = 8192


@dataclass(frozen=True)
class TraceTarget:
    kind: str  # otlp | console | file | none
    detail: str  # endpoint or path, for `wwts info`


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def choose_exporter_kind() -> str:
    chosen = (_env("OTEL_TRACES_EXPORTER") or "").split(",")[0].strip().lower()
    if chosen in ("otlp", "console", "none"):
        return chosen
    if _env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or _env("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return "otlp"
    return "file"


def otlp_protocol() -> str:
    return (_env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or _env("OTEL_EXPORTER_OTLP_PROTOCOL") or "grpc").lower()


def otlp_endpoint() -> str:
    endpoint = _env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or _env("OTEL_EXPORTER_OTLP_ENDPOINT")
    if endpoint:
        return endpoint
    return "http://localhost:4318" if otlp_protocol().startswith("http") else "http://localhost:4317"


def describe_target(log_dir: Path) -> TraceTarget:
    kind = choose_exporter_kind()
    if kind == "otlp":
        return TraceTarget("otlp", f"{otlp_endpoint()} ({otlp_protocol()})")
    if kind == "file":
        return TraceTarget("file", str(log_dir / "traces-YYYY-MM-DD.jsonl"))
    return TraceTarget(kind, "")


def make_exporter(log_dir: Path) -> SpanExporter | None:
    kind = choose_exporter_kind()
    if kind == "none":
        return None
    if kind == "console":
        return ConsoleSpanExporter()
    if kind == "file":
        return OtlpJsonFileExporter(log_dir)
    timeout = None if _env("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT") or _env("OTEL_EXPORTER_OTLP_TIMEOUT") else EXPORT_TIMEOUT_S
    if otlp_protocol().startswith("http"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        return HttpExporter(timeout=timeout) if timeout else HttpExporter()
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

    return GrpcExporter(timeout=timeout) if timeout else GrpcExporter()


def make_resource(service_version: str) -> Resource:
    """service.* from OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES, plus host and process."""
    base = {
        "service.name": _env("OTEL_SERVICE_NAME") or DEFAULT_SERVICE,
        "service.version": service_version,
        "host.name": socket.gethostname(),
        "host.arch": platform.machine(),
        "os.type": platform.system().lower(),
        "process.pid": os.getpid(),
        "process.runtime.name": platform.python_implementation(),
        "process.runtime.version": platform.python_version(),
        "telemetry.sdk.language": "python",
    }
    # Resource.create reads OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME itself; ours fill the rest.
    return Resource(base).merge(Resource.create({"service.version": service_version, "service.name": base["service.name"]}))


def make_provider(log_dir: Path, service_version: str) -> tuple[TracerProvider, SpanExporter | None]:
    # shutdown_on_exit=False: Telemetry.shutdown flushes within its budget; an atexit flush
    # would wait on a dead collector a second time.
    provider = TracerProvider(resource=make_resource(service_version), shutdown_on_exit=False)
    exporter = make_exporter(log_dir)
    if exporter is not None:
        provider.add_span_processor(
            BatchSpanProcessor(
                exporter,
                max_queue_size=QUEUE_SIZE,
                schedule_delay_millis=1000,
                max_export_batch_size=512,
                export_timeout_millis=int(EXPORT_TIMEOUT_S * 1000),
            )
        )
    return provider, exporter
