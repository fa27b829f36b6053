"""The process's metrics: one `MeterProvider` beside the tracer provider (the same
`Resource`), wwts's pipeline instruments, the resource sampler's figures as observable
gauges, and the Prometheus reader that `wwts serve` renders at `/metrics`.

Exemplars come from the SDK's trace-based exemplar filter (`OTEL_METRICS_EXEMPLAR_FILTER`,
default `trace_based`): a measurement made with a sampled span in its context keeps that
span's trace and span id, so a slow bucket leads to a trace that `wwts trace show` opens.

Names are the interface's (README.md, "Metrics"): semantic-convention names where the
conventions define the metric, `wwts.*` for the pipeline's own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    MeterProvider,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    ConsoleMetricExporter,
    MetricExporter,
    MetricExportResult,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource

from telemetry.config import CONSOLE, CUMULATIVE, DELTA, FILE, NONE, OtelConfig, SignalConfig
from telemetry.names import INSTRUMENTATION_SCOPE
from telemetry.otlp_file import OtlpJsonMetricsFileExporter
from telemetry.resources import ResourceSampler, Snapshot

# -- names: the pipeline's instruments ---------------------------------------------------
HTTP_SERVER_DURATION = "http.server.request.duration"  # made by the FastAPI instrumentation
STAGE_DURATION = "wwts.stage.duration"
IMAGES = "wwts.images"
BATCH_SIZE = "wwts.batch.size"
QUEUE_DEPTH = "wwts.queue.depth"
# their attributes
STAGE, MODEL, RUNTIME = "wwts.stage", "wwts.model.name", "wwts.runtime"
OUTCOME, ERROR_TYPE = "event.outcome", "error.type"

# -- names: resource figures (semantic conventions: process, system, hardware) ----------
PROCESS_CPU_UTILIZATION = "process.cpu.utilization"
PROCESS_MEMORY_USAGE = "process.memory.usage"
SYSTEM_MEMORY_USAGE = "system.memory.usage"
SYSTEM_MEMORY_UTILIZATION = "system.memory.utilization"
GPU_MEMORY_USAGE = "hw.gpu.memory.usage"
GPU_MEMORY_LIMIT = "hw.gpu.memory.limit"
GPU_UTILIZATION = "hw.gpu.utilization"
GPU_TEMPERATURE = "hw.temperature"  # a sensor (hw.type temperature) whose parent is the GPU
MEMORY_STATE, MEMORY_USED = "system.memory.state", "used"
HW_ID, HW_TYPE, HW_NAME, HW_PARENT = "hw.id", "hw.type", "hw.name", "hw.parent"
HW_SENSOR_LOCATION, HW_GPU_TASK = "hw.sensor_location", "hw.gpu.task"

# Stage durations run from ~0.1 ms (postprocess) to seconds (a large image on a busy
# CPU): the HTTP convention's advised boundaries, extended downwards.
STAGE_BUCKETS_S = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025,
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def temporality(preference: str) -> dict[type, AggregationTemporality]:
    """The specification's `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE` table."""
    cumulative, delta = AggregationTemporality.CUMULATIVE, AggregationTemporality.DELTA
    table = dict.fromkeys(
        (Counter, UpDownCounter, Histogram, ObservableCounter, ObservableUpDownCounter, ObservableGauge), cumulative
    )
    if preference != CUMULATIVE:
        table[Counter] = table[Histogram] = delta
        if preference == DELTA:
            table[ObservableCounter] = delta
    return table


def make_exporter(config: SignalConfig, log_dir: Path, preference: str) -> MetricExporter | None:
    """`telemetry.config`'s choice for metrics, as for traces: otlp, console, none, or the
    local OTLP-JSON file when nothing is configured."""
    preferred = temporality(preference)
    if config.kind == NONE:
        return None
    if config.kind == CONSOLE:
        return ConsoleMetricExporter(preferred_temporality=preferred)
    if config.kind == FILE:
        return OtlpJsonMetricsFileExporter(log_dir, preferred_temporality=preferred)
    options: dict[str, Any] = {"preferred_temporality": preferred}
    if config.timeout_s:
        options["timeout"] = config.timeout_s
    if config.http:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpExporter

        return Watched(HttpExporter(**options), preferred)
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcExporter

    return Watched(GrpcExporter(**options), preferred)


class Watched(MetricExporter):
    """An exporter that remembers whether any export failed (as `telemetry.tracing.Watched`
    does for spans): the end of a run says so from the results, not from log lines."""

    def __init__(self, inner: MetricExporter, preferred_temporality: dict[type, AggregationTemporality]) -> None:
        super().__init__(preferred_temporality=preferred_temporality)
        self.inner = inner
        self.failures = 0

    def export(self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        result = self.inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        if result is not MetricExportResult.SUCCESS:
            self.failures += 1
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.inner.shutdown(timeout_millis=timeout_millis, **kwargs)


@dataclass
class MeterSetup:
    """What `make_meter_provider` built: the provider, its exporter (if any, for the end
    of run report) and, for `serve`, the Prometheus reader's registry."""

    provider: MeterProvider
    exporter: MetricExporter | None
    prometheus: Any | None = None  # prometheus_client.CollectorRegistry


def make_meter_provider(
    resource: Resource, otel: OtelConfig, log_dir: Path, *, prometheus: bool = False,
    readers: Iterable[MetricReader] = (),
) -> MeterSetup:
    """A provider on `resource` with the configured exporter (read every
    OTEL_METRIC_EXPORT_INTERVAL and once more at shutdown), a Prometheus reader on a
    registry of its own when asked, and any extra `readers` (tests)."""
    all_readers = list(readers)
    exporter = make_exporter(otel.metrics, log_dir, otel.metric_temporality)
    if exporter is not None:
        timeout_ms = int((otel.metrics.timeout_s or 10.0) * 1000)
        all_readers.append(
            PeriodicExportingMetricReader(
                exporter, export_interval_millis=otel.metric_interval_ms, export_timeout_millis=timeout_ms
            )
        )
    registry = None
    if prometheus:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import CollectorRegistry

        registry = CollectorRegistry(auto_describe=True)
        all_readers.append(PrometheusMetricReader(registry=registry))
    # shutdown_on_exit=False: Telemetry.shutdown flushes within its budget (as for traces)
    provider = MeterProvider(metric_readers=all_readers, resource=resource, shutdown_on_exit=False)
    return MeterSetup(provider, exporter, registry)


def prometheus_text(registry: Any) -> bytes:
    """`/metrics`: the Prometheus text exposition of the registry's readers, rendered by
    prometheus_client (names as Prometheus spells them: `wwts_stage_duration_seconds`)."""
    from prometheus_client import generate_latest

    return generate_latest(registry)


class PipelineMetrics:
    """The pipeline's instruments, recorded by `telemetry.hooks` when an input finishes.

    Each call takes the OpenTelemetry context of the span the figure belongs to, so the
    exemplar filter can attach that span's ids."""

    def __init__(self, meter: Meter) -> None:
        self.stage_duration = meter.create_histogram(
            STAGE_DURATION, unit="s", description="Time an input spent in one pipeline stage.",
            explicit_bucket_boundaries_advisory=STAGE_BUCKETS_S,
        )
        self.images = meter.create_counter(
            IMAGES, unit="{image}", description="Inputs finished, by outcome (and error type on failure)."
        )
        self.batch_size = meter.create_histogram(
            BATCH_SIZE, unit="{image}", description="Inputs per forward pass.",
            explicit_bucket_boundaries_advisory=BATCH_BUCKETS,
        )

    def stage(self, seconds: float, attributes: Mapping[str, str], context: Context | None) -> None:
        self.stage_duration.record(seconds, attributes, context=context)

    def image(self, attributes: Mapping[str, str], context: Context | None) -> None:
        self.images.add(1, attributes, context=context)

    def batch(self, size: int, attributes: Mapping[str, str], context: Context | None) -> None:
        self.batch_size.record(size, attributes, context=context)


def observe_queue_depth(meter: Meter, depth: Callable[[], int]) -> None:
    """`wwts.queue.depth`: the inputs waiting for a batch slot, read at each collection
    (for `serve`: `observe_queue_depth(meter, lambda: batcher.depth)`)."""
    meter.create_observable_gauge(
        QUEUE_DEPTH, [lambda _options: [Observation(depth())]], unit="{image}",
        description="Inputs waiting for a batch slot.",
    )


def observe_resources(meter: Meter, sampler: ResourceSampler) -> None:
    """Process, system and GPU figures from the sampler's latest snapshot: a collection
    costs no system call (the sampler thread made them already)."""

    def read(figures: Callable[[Snapshot], Iterable[Observation]]) -> Callable[[CallbackOptions], Iterable[Observation]]:
        return lambda _options: list(figures(sampler.latest))

    def gpus(value: Callable[[Any], float | int | None], **extra: str) -> Callable[[Snapshot], list[Observation]]:
        return lambda s: [
            Observation(v, {HW_ID: f"gpu{g.index}", HW_TYPE: "gpu", HW_NAME: g.name, **extra})
            for g in s.gpus if (v := value(g)) is not None
        ]

    def temperatures(s: Snapshot) -> list[Observation]:
        return [
            Observation(g.temperature_c, {HW_ID: f"gpu{g.index}.temperature", HW_TYPE: "temperature",
                                          HW_PARENT: f"gpu{g.index}", HW_SENSOR_LOCATION: "gpu", HW_NAME: g.name})
            for g in s.gpus if g.temperature_c is not None
        ]

    used = {MEMORY_STATE: MEMORY_USED}
    meter.create_observable_gauge(
        PROCESS_CPU_UTILIZATION, [read(lambda s: [Observation(s.process_cpu_utilization)])], unit="1",
        description="CPU time of this process over the sampling interval, as a fraction of all CPUs.",
    )
    meter.create_observable_up_down_counter(
        PROCESS_MEMORY_USAGE, [read(lambda s: [Observation(s.process_rss_bytes)])], unit="By",
        description="Resident memory of this process.",
    )
    meter.create_observable_up_down_counter(
        SYSTEM_MEMORY_USAGE, [read(lambda s: [Observation(s.system_memory_used_bytes, used)])], unit="By",
        description="Memory in use on the host.",
    )
    meter.create_observable_gauge(
        SYSTEM_MEMORY_UTILIZATION, [read(lambda s: [Observation(s.system_memory_utilization, used)])], unit="1",
        description="Fraction of the host's memory in use.",
    )
    meter.create_observable_up_down_counter(
        GPU_MEMORY_USAGE, [read(gpus(lambda g: g.memory_used_bytes))], unit="By", description="GPU memory used."
    )
    meter.create_observable_up_down_counter(
        GPU_MEMORY_LIMIT, [read(gpus(lambda g: g.memory_total_bytes))], unit="By", description="Size of the GPU memory."
    )
    meter.create_observable_gauge(
        GPU_UTILIZATION, [read(gpus(lambda g: g.utilization, **{HW_GPU_TASK: "general"}))], unit="1",
        description="Fraction of time the GPU was busy.",
    )
    meter.create_observable_gauge(
        GPU_TEMPERATURE, [read(temperatures)], unit="Cel", description="GPU temperature."
    )


def meter(provider: MeterProvider, version: str) -> Meter:
    return provider.get_meter(INSTRUMENTATION_SCOPE, version)
