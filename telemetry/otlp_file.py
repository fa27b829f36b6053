"""Exporters that append OTLP/JSON lines to daily files in the log directory.

A run with no collector still leaves a trace to read, and one that `wwts traces ship`
can send later. The encoding is OpenTelemetry's own OTLP/JSON encoder (ids in hex, enums
as integers): one `ExportTraceServiceRequest` per line, the format of the Collector's
file exporter and of an OTLP/HTTP JSON body, so the same line can be posted as it is.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry.exporter.otlp.json.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from telemetry.daily import DailyFiles
from telemetry.names import TRACES_PREFIX


def spans_to_json(spans: Sequence[ReadableSpan]) -> dict[str, Any]:
    """One ExportTraceServiceRequest in OTLP/JSON."""
    return encode_spans(spans).to_dict()


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
    def __init__(self, directory: Path) -> None:
        self.lines = JsonLines(directory, TRACES_PREFIX)

    @property
    def failed(self) -> OSError | None:
        return self.lines.failed

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        ok = self.lines.write(spans_to_json(spans))
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self.lines.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True  # every export is flushed as it is written
