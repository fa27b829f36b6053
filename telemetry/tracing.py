"""The tracer provider, with the exporter `telemetry.config` chose for traces.

`otlp` (gRPC or HTTP by protocol), `console`, `none`, or — nothing configured — the local
OTLP-JSON file in the log directory, so a run with no servers still leaves a trace.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter, SpanExportResult

from telemetry.config import CONSOLE, FILE, NONE, OTLP, SignalConfig
from telemetry.names import TRACES_PREFIX
from telemetry.otlp_file import OtlpJsonFileExporter

QUEUE_SIZE = 8192
SCHEDULE_DELAY_MS = 1000
EXPORT_BATCH = 512


@dataclass(frozen=True)
class Target:
    """Where traces go, for `wwts info`."""

    kind: str  # otlp | console | file | none
    detail: str  # endpoint or path


def describe(config: SignalConfig, log_dir: Path) -> Target:
    if config.kind == OTLP:
        return Target(OTLP, f"{config.endpoint} ({config.protocol})")
    if config.kind == FILE:
        return Target(FILE, str(log_dir / f"{TRACES_PREFIX}-YYYY-MM-DD.jsonl"))
    return Target(config.kind, "")


class Watched(SpanExporter):
    """An exporter that remembers whether any export failed, so that the end of a run can
    say so in one line whatever the exporter logged (or did not log) on the way."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.failures = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self.inner.export(spans)
        if result is not SpanExportResult.SUCCESS:
            self.failures += 1
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def make_exporter(config: SignalConfig, log_dir: Path) -> SpanExporter | None:
    if config.kind == NONE:
        return None
    if config.kind == CONSOLE:
        return ConsoleSpanExporter()
    if config.kind == FILE:
        return OtlpJsonFileExporter(log_dir)
    options = {"timeout": config.timeout_s} if config.timeout_s else {}
    if config.http:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        return Watched(HttpExporter(**options))
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

    return Watched(GrpcExporter(**options))


def make_provider(resource: Resource, config: SignalConfig, log_dir: Path) -> tuple[TracerProvider, SpanExporter | None]:
    # shutdown_on_exit=False: Telemetry.shutdown flushes within its budget; an atexit flush
    # would wait on a dead collector a second time.
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    exporter = make_exporter(config, log_dir)
    if exporter is not None:
        timeout_ms = int((config.timeout_s or 10.0) * 1000)
        provider.add_span_processor(
            BatchSpanProcessor(
                exporter, max_queue_size=QUEUE_SIZE, schedule_delay_millis=SCHEDULE_DELAY_MS,
                max_export_batch_size=EXPORT_BATCH, export_timeout_millis=timeout_ms,
            )
        )
    return provider, exporter
