"""A span exporter that appends OTLP-JSON lines to a daily file in the log directory.

The demo needs a real trace with no collector running. The format is the one the
Collector's file exporter writes (one ExportTraceServiceRequest per line, ids in hex),
so the same tools read both.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from telemetry.daily import DailyFiles

_ID_KEYS = ("traceId", "spanId", "parentSpanId")


def to_otlp_json(spans: Sequence[ReadableSpan]) -> dict[str, Any]:
    document = MessageToDict(encode_spans(spans))
    for resource_spans in document.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                _hex_ids(span)
                for link in span.get("links", []):
                    _hex_ids(link)
    return document


def _hex_ids(obj: dict[str, Any]) -> None:
    """OTLP/JSON writes ids as hex, protobuf's JSON mapping as base64: fix that up."""
    for key in _ID_KEYS:
        if obj.get(key):
            obj[key] = base64.b64decode(obj[key]).hex()


class OtlpJsonFileExporter(SpanExporter):
    def __init__(self, directory: Path, prefix: str = "traces") -> None:
        self.files = DailyFiles(directory, prefix)
        self._lock = threading.Lock()

    @property
    def current_path(self) -> Path:
        return self.files.path_for_today()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            line = json.dumps(to_otlp_json(spans), ensure_ascii=False, separators=(",", ":")) + "\n"
            with self._lock:
                self.files.write(line)
                self.files.flush()
            return SpanExportResult.SUCCESS
        except OSError:
            return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        with self._lock:
            self.files.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        with self._lock:
            self.files.flush()
        return True
