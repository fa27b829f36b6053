"""Wire telemetry for one process: the resource, the console and record handlers, the
tracer provider, the resource sampler and the record shipper; and take it all down
again within a bounded time, whatever the backends are doing."""

from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from pipeline.driver import Hooks
from telemetry.config import OtelConfig
from telemetry.console import ConsoleFormatter, not_inference
from telemetry.daily import DEFAULT_KEEP_DAYS, prune
from telemetry.elastic import EsConfig
from telemetry.elastic import client as es_client
from telemetry.hooks import TelemetryHooks
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


class _LastProblem(logging.Handler):
    """Collects the OpenTelemetry SDK's export complaints (one per retry and batch) so the
    run ends with one warning instead of a stream of them."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.count = 0
        self.last: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        self.last = record.getMessage().splitlines()[0][:300]


class Telemetry:
    def __init__(self, config: TelemetryConfig) -> None:
        self.config = config
        self.logger = logging.getLogger(LOGGER_NAME)
        self.resource: Resource | None = None
        self.provider: TracerProvider | None = None
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

    def hooks(self) -> Hooks:
        """Span and record hooks for the driver (plain `Hooks` when telemetry is off)."""
        if not self.config.enabled:
            return Hooks()
        return TelemetryHooks(self.tracer, self.logger, sampler=self.sampler, thresholds=self.config.thresholds)

    def snapshot(self) -> Snapshot | None:
        """The latest resource figures (the console shows them per image)."""
        return self.sampler.latest if self.sampler is not None else None

    def shutdown(self) -> None:
        """Flush spans and ship records in parallel within SHUTDOWN_BUDGET_S: dead backends
        cost at most that, and the records stay on disk."""
        deadline = time.monotonic() + SHUTDOWN_BUDGET_S
        if self.sampler is not None:
            self.sampler.stop()
        flusher = None
        if self.provider is not None:
            flusher = threading.Thread(target=self.provider.shutdown, name="wwts-trace-flush", daemon=True)
            flusher.start()
        if self.shipper is not None:
            self.shipper.stop()
        if flusher is not None:
            flusher.join(max(0.0, deadline - time.monotonic()))
            if flusher.is_alive() or self._otel_problems.count:
                self.logger.warning(
                    "traces were not all exported (%s); inference results are unaffected",
                    self._otel_problems.last or f"no answer within {SHUTDOWN_BUDGET_S:.0f} s",
                )
            logging.getLogger("opentelemetry").removeHandler(self._otel_problems)
        if self.file_handler is not None:
            self.logger.removeHandler(self.file_handler)
            self.file_handler.close()
            failed = self.file_handler.failed or getattr(self._exporter, "failed", None)
            if failed is not None:  # console only: the files are what failed
                self.logger.warning(
                    "could not write log records and traces to %s (%s); inference was not affected",
                    self.config.log_dir, failed,
                )
        if self._console_handler is not None:
            self._console_handler.flush()
            self.logger.removeHandler(self._console_handler)
