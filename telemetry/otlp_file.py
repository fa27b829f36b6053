"""Exporters that append OTLP/JSON lines to daily files in the log directory.

A run with no collector still leaves a trace to read, and one that `wwts trace ship`
can send later; its metrics (with their exemplars' trace ids) land beside it. The
encoding is OTLP/JSON (ids in hex, enums as integers) — OpenTelemetry's own encoder for
metrics, its equal `telemetry.otlp_json` for spans — one `ExportTraceServiceRequest` /
`ExportMetricsServiceRequest` per line, the format of the Collector's file exporter and of
an OTLP/HTTP JSON body, so a line can be posted as it is.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry.exporter.otlp.json.common.metrics_encoder import encode_metrics
from opentelemetry.sdk.metrics.export import AggregationTemporality, MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from telemetry.daily import DailyFiles
from telemetry.names import METRICS_PREFIX, TRACES_PREFIX
from telemetry.otlp_json import SpanEncoder


def metrics_to_json(data: MetricsData) -> dict[str, Any]:
    """One ExportMetricsServiceRequest in OTLP/JSON."""
    return encode_metrics(data).to_dict()


class JsonLines:
    """Whole OTLP/JSON documents, one per line, into `<prefix>-YYYY-MM-DD.jsonl`; written
    and flushed per export, so a reader (or the shipper) sees complete lines only."""

    def __init__(self, directory: Path, prefix: str) -> None:
        self.files = DailyFiles(directory, prefix)
        self._lock = threading.Lock()
        self.failed: OSError | None = None  # disk full or directory unwritable: warned once at the end

    def write(self, document: dict[str, Any]) -> bool:
        try:
            line = json.dumps(document, ensure_ascii=False, separators=(",", ":")) + "\n"
            with self._lock:
                self.files.write(line)
                self.files.flush()
            return True
        except OSError as exc:
            self.failed = exc
            return False

    def close(self) -> None:
        with self._lock:
            try:
                self.files.close()
            except OSError as exc:
                self.failed = exc


class OtlpJsonFileExporter(SpanExporter):
    """Spans into `traces-YYYY-MM-DD.jsonl` (encoded by `telemetry.otlp_json`'s fast path)."""

    def __init__(self, directory: Path) -> None:
        self.lines = JsonLines(directory, TRACES_PREFIX)
        self.encoder = SpanEncoder()

    @property
    def failed(self) -> OSError | None:
        return self.lines.failed

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        ok = self.lines.write(self.encoder.encode(spans))
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self.lines.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True  # every export is flushed as it is written


class OtlpJsonMetricsFileExporter(MetricExporter):
    """Metrics into `metrics-YYYY-MM-DD.jsonl`, one export (a collection) per line."""

    def __init__(self, directory: Path, preferred_temporality: dict[type, AggregationTemporality] | None = None) -> None:
        super().__init__(preferred_temporality=preferred_temporality)
        self.lines = JsonLines(directory, METRICS_PREFIX)

    @property
    def failed(self) -> OSError | None:
        return self.lines.failed

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        if not metrics_data.resource_metrics:
            return MetricExportResult.SUCCESS
        ok = self.lines.write(metrics_to_json(metrics_data))
        return MetricExportResult.SUCCESS if ok else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True  # every export is flushed as it is written

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.lines.close()
