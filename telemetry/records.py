"""ECS JSON records: a formatter that adds the fields every wwts record carries, and a
handler that appends them to the daily files.

Records are plain `logging` records; what makes them ECS documents lives here, so the
runner only says `log.info(message, extra={...})`.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from pathlib import Path
from typing import Any

import ecs_logging
from opentelemetry import trace

from telemetry.daily import DailyFiles

LOGGER_NAME = "wwts"
RECORD_PREFIX = "wwts"


class EcsFormatter(ecs_logging.StdlibFormatter):
    """ecs-logging's formatter plus service/host fields, a unique `event.id`, and the
    active span's `trace.id`/`span.id` (ecs-logging only knows Elastic APM's)."""

    def __init__(self, service_name: str, service_version: str) -> None:
        super().__init__(
            ensure_ascii=False,
            exclude_fields=["log.original", "process.name", "process.thread.id", "log.origin"],
            extra={
                "service": {"name": service_name, "version": service_version},
                "host": {"name": socket.gethostname()},
            },
        )

    def format_to_ecs(self, record: logging.LogRecord) -> dict[str, Any]:
        document = super().format_to_ecs(record)
        event = document.setdefault("event", {})
        event.setdefault("id", uuid.uuid4().hex)
        event.setdefault("dataset", "wwts.log")
        process = document.setdefault("process", {})
        process.setdefault("pid", os.getpid())
        context = _span_context(record)
        if context is not None:
            document["trace"] = {"id": format(context.trace_id, "032x")}
            document["span"] = {"id": format(context.span_id, "016x")}
        return document


def _span_context(record: logging.LogRecord) -> trace.SpanContext | None:
    """The span the record was made in: given explicitly (`extra={"otel_span": …}`),
    or else the current one of the emitting thread."""
    span = getattr(record, "otel_span", None) or trace.get_current_span()
    context = span.get_span_context()
    return context if context.is_valid else None


class DailyEcsHandler(logging.Handler):
    """Writes each record as one ECS JSON line into `wwts-YYYY-MM-DD.jsonl`."""

    def __init__(self, directory: Path, formatter: EcsFormatter) -> None:
        super().__init__(level=logging.DEBUG)
        self.files = DailyFiles(directory, RECORD_PREFIX)
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


# `otel_span` is a carrier for the formatter, not a document field.
EcsFormatter._LOGRECORD_DICT = EcsFormatter._LOGRECORD_DICT | {"otel_span"}  # type: ignore[misc]
