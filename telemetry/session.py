"""Wire telemetry for one process: the resource, the console and record handlers, the
tracer and meter providers, the resource sampler and the record shipper; and take it all
down again within a bounded time, whatever the backends are doing."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from opentelemetry import trace
from opentelemetry.metrics import Meter, NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from pipeline.driver import Hooks
from telemetry.config import OtelConfig
from telemetry.console import ConsoleFormatter, not_inference
from telemetry.daily import DEFAULT_KEEP_DAYS, prune
from telemetry.elastic import EsConfig
from telemetry.elastic import client as es_client
from telemetry.hooks import ResultFields, TelemetryHooks
from telemetry.metrics import MeterSetup, PipelineMetrics, make_meter_provider, observe_queue_depth, observe_resources
from telemetry.metrics import prometheus_text as render_prometheus
from telemetry.names import INSTRUMENTATION_SCOPE, LOGGER_NAME
from telemetry.records import DailyEcsHandler, EcsFormatter
from telemetry.resource import build_resource, ecs_fields
from telemetry.resources import ResourceSampler, Snapshot
from telemetry.shipping import BackgroundShipper
from telemetry.thresholds import Thresholds
from telemetry.tracing import make_provider

SHUTDOWN_BUDGET_S = 1.5  # a dead backend costs a run at most ~2 s; leave room to exit


@dataclass
class TelemetryConfig:
    log_dir: Path
    service_version: str
    enabled: bool = True  # False: no spans, no records, no sampler (the benchmark's "off")
    console_level: int = logging.INFO
    console: TextIO = field(default_factory=lambda: sys.stderr)
    thresholds: Thresholds = field(default_factory=Thresholds)
    keep_days: int = DEFAULT_KEEP_DAYS
    es: EsConfig | None = None  # set: records are shipped from the daily files while the run goes
    otel: OtelConfig = field(default_factory=OtelConfig.from_env)
    prometheus: bool = False  # True: a Prometheus reader too, for `serve`'s GET /metrics


class _LastProblem(logging.Handler):
    """Keeps the OpenTelemetry SDK's last export complaint (it logs one per retry and
    batch): the run ends with one warning that quotes it instead of a stream of them.
    Whether a signal failed comes from its exporter's results (`Watched`), not from here."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.last: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.last = record.getMessage().splitlines()[0][:300]


class Telemetry:
    def __init__(self, config: TelemetryConfig) -> None:
        self.config = config
        self.logger = logging.getLogger(LOGGER_NAME)
        self.resource: Resource | None = None
        self.provider: TracerProvider | None = None
        self.meters: MeterSetup | None = None
        self._pipeline_metrics: PipelineMetrics | None = None
        self.sampler: ResourceSampler | None = None
        self.file_handler: DailyEcsHandler | None = None
        self._console_handler: logging.Handler | None = None
        self.shipper: BackgroundShipper | None = None
        self._exporter: object | None = None
        self._otel_problems = _LastProblem()

    def start(self) -> Telemetry:
        config = self.config
        self.logger.setLevel(logging.DEBUG)
        self.logger.propagate = False
        console = logging.StreamHandler(config.console)
        console.setLevel(config.console_level)
        console.setFormatter(ConsoleFormatter())
        console.addFilter(not_inference)  # the front door shows results its own way
        self.logger.addHandler(console)
        self._console_handler = console
        if not config.enabled:
            return self
        try:
            prune(config.log_dir, config.keep_days)
        except OSError:
            pass
        self.resource = build_resource(config.service_version)
        self.file_handler = DailyEcsHandler(config.log_dir, EcsFormatter(ecs_fields(self.resource)))
        self.logger.addHandler(self.file_handler)
        sdk_logger = logging.getLogger("opentelemetry")
        sdk_logger.addHandler(self._otel_problems)
        sdk_logger.propagate = False
        self.provider, self._exporter = make_provider(self.resource, config.otel.traces, config.log_dir)
        self.sampler = ResourceSampler().start()
        self.meters = make_meter_provider(self.resource, config.otel, config.log_dir, prometheus=config.prometheus)
        self._pipeline_metrics = PipelineMetrics(self.meter)
        observe_resources(self.meter, self.sampler)
        if config.es is not None:
            es = config.es
            self.shipper = BackgroundShipper(
                lambda: es_client(es), config.log_dir, self.file_handler.flush, warn=self.logger.warning
            ).start()
        return self

    @property
    def tracer(self) -> trace.Tracer:
        if self.provider is None:
            return trace.NoOpTracer()
        return self.provider.get_tracer(INSTRUMENTATION_SCOPE, self.config.service_version)

    @property
    def meter_provider(self) -> MeterProvider | NoOpMeterProvider:
        """For instrumentations (FastAPI's `http.server.request.duration`)."""
        return self.meters.provider if self.meters is not None else NoOpMeterProvider()

    @property
    def meter(self) -> Meter:
        return self.meter_provider.get_meter(INSTRUMENTATION_SCOPE, self.config.service_version)

    def observe_queue_depth(self, depth: Callable[[], int]) -> None:
        """`wwts.queue.depth`, read from `depth()` at each collection."""
        observe_queue_depth(self.meter, depth)

    def prometheus_text(self) -> bytes:
        """GET /metrics: the Prometheus exposition (empty without `prometheus=True`)."""
        if self.meters is None or self.meters.prometheus is None:
            return b""
        return render_prometheus(self.meters.prometheus)

    def hooks(self, result_fields: ResultFields | None = None) -> Hooks:
        """Span, record and metric hooks for the driver (plain `Hooks` when telemetry is off);
        `result_fields(result)` is merged into each input's record (nested ECS fields)."""
        if not self.config.enabled:
            return Hooks()
        return TelemetryHooks(
            self.tracer, self.logger, sampler=self.sampler, thresholds=self.config.thresholds,
            metrics=self._pipeline_metrics, result_fields=result_fields,
        )

    def snapshot(self) -> Snapshot | None:
        """The latest resource figures (the console shows them per image)."""
        return self.sampler.latest if self.sampler is not None else None

    def shutdown(self) -> None:
        """Flush spans and metrics and ship records in parallel within SHUTDOWN_BUDGET_S:
        dead backends cost at most that, and the records stay on disk."""
        deadline = time.monotonic() + SHUTDOWN_BUDGET_S
        if self.sampler is not None:
            self.sampler.stop()  # its last snapshot stays readable for the final collection
        traces = _flusher(self.provider.shutdown, "wwts-trace-flush") if self.provider is not None else None
        metrics = None
        if self.meters is not None:
            meters = self.meters.provider
            metrics = _flusher(lambda: meters.shutdown(timeout_millis=SHUTDOWN_BUDGET_S * 1000), "wwts-metric-flush")
        if self.shipper is not None:
            self.shipper.stop()
        for flusher in (traces, metrics):
            if flusher is not None:
                flusher.join(max(0.0, deadline - time.monotonic()))
        metric_exporter = self.meters.exporter if self.meters is not None else None
        if traces is not None or metrics is not None:
            self._report_exports(_failed(traces, self._exporter), _failed(metrics, metric_exporter))
            logging.getLogger("opentelemetry").removeHandler(self._otel_problems)
        if self.file_handler is not None:
            self.logger.removeHandler(self.file_handler)
            self.file_handler.close()
            failed = (self.file_handler.failed or getattr(self._exporter, "failed", None)
                      or getattr(metric_exporter, "failed", None))
            if failed is not None:  # console only: the files are what failed
                self.logger.warning(
                    "could not write log records and traces to %s (%s); inference was not affected",
                    self.config.log_dir, failed,
                )
        if self._console_handler is not None:
            self._console_handler.flush()
            self.logger.removeHandler(self._console_handler)

    def _report_exports(self, traces: bool, metrics: bool) -> None:
        """One warning line whatever failed: a dead collector fails both signals at once."""
        if not (traces or metrics):
            return
        what = "traces were not all exported, nor metrics" if traces and metrics else (
            "traces were not all exported" if traces else "metrics were not all exported")
        self.logger.warning(
            "%s (%s); inference results are unaffected", what,
            self._otel_problems.last or f"no answer within {SHUTDOWN_BUDGET_S:.0f} s",
        )


def _failed(flusher: threading.Thread | None, exporter: object | None) -> bool:
    """A signal did not get out: its flush outlived the budget, or an export failed."""
    return flusher is not None and (flusher.is_alive() or getattr(exporter, "failures", 0) > 0)


def _flusher(flush: Callable[[], object], name: str) -> threading.Thread:
    thread = threading.Thread(target=flush, name=name, daemon=True)
    thread.start()
    return thread
