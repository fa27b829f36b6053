"""ECS JSON records: ecs-logging's formatter, extended through its documented hook
(`format_to_ecs` + `super()`), and a handler that appends them to the daily files.

Records are plain `logging` records; what makes them ECS documents lives here, so the
hooks only say `log.info(message, extra={...})`.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

import ecs_logging
from opentelemetry import trace

from telemetry.daily import DailyFiles
from telemetry.names import LOG, RECORDS_PREFIX

# ecs-logging fields left out of every record: the message already says what
# log.original would, and origin/thread ids are noise for an incident reviewer
EXCLUDED_FIELDS = ("log.original", "log.origin", "process.name", "process.thread.id")


def trace_fields(context: trace.SpanContext) -> dict[str, Any]:
    """`trace.id` and `span.id` of a record made for a span (extra fields)."""
    return {"trace": {"id": format(context.trace_id, "032x")}, "span": {"id": format(context.span_id, "016x")}}


class EcsFormatter(ecs_logging.StdlibFormatter):
    """ecs-logging's document plus what every wwts record carries: the service and host
    (derived from the process's OpenTelemetry resource), a unique `event.id` (the
    Elasticsearch `_id`, which makes re-sending safe), a dataset, and the trace ids of
    the span the record belongs to (given as extra fields, or else the current span)."""

    def __init__(self, static_fields: dict[str, Any]) -> None:
        super().__init__(ensure_ascii=False, exclude_fields=EXCLUDED_FIELDS, extra=static_fields)

    def format_to_ecs(self, record: logging.LogRecord) -> dict[str, Any]:
        document = super().format_to_ecs(record)
        event = document.setdefault("event", {})
        event.setdefault("id", uuid.uuid4().hex)
        event.setdefault("dataset", LOG)
        if "trace" not in document:
            context = trace.get_current_span().get_span_context()
            if context.is_valid:
                document.update(trace_fields(context))
        return document


class DailyEcsHandler(logging.Handler):
    """Writes each record as one ECS JSON line into `wwts-YYYY-MM-DD.jsonl`."""

    def __init__(self, directory: Path, formatter: EcsFormatter) -> None:
        super().__init__(level=logging.DEBUG)
        self.files = DailyFiles(directory, RECORDS_PREFIX)
        self.setFormatter(formatter)
        self.failed: OSError | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
            with self.lock:  # type: ignore[union-attr]
                self.files.write(line)
        except OSError as exc:
            # Disk full or directory unwritable: remember it (one warning at the end of
            # the run) instead of printing logging's traceback for every record.
            self.failed = exc
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            try:
                self.files.flush()
            except OSError as exc:
                self.failed = exc

    def close(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            try:
                self.files.close()
            except OSError as exc:
                self.failed = exc
        super().close()
