"""ECS JSON records: ecs-logging's formatter, extended through its documented hook
(`format_to_ecs` + `super()`), and a handler that appends them to the daily files.

Records are plain `logging` records; what makes them ECS documents lives here, so the
hooks only say `log.info(message, extra={...})`.

One fast path, for the record of every input: its fields arrive already nested (the
mapping of `telemetry.fields`), as one extra (`DOCUMENT`), and are merged once instead
of ecs-logging's flatten/de-dot/merge per field. That walk cost ~0.2 ms per record,
~2 % of an image at ONNX Runtime's speed on 2 cores (benchmarks/README.md); the test
`tests/test_telemetry_encoding.py` holds the fast document equal to ecs-logging's own
for the same fields, and ecs-logging's major version is pinned.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ecs_logging
from opentelemetry import trace

from telemetry.daily import DailyFiles
from telemetry.fields import merge
from telemetry.names import LOG, RECORDS_PREFIX, STARTUP

# ecs-logging fields left out of every record: the message already says what
# log.original would, and origin/thread ids are noise for an incident reviewer
EXCLUDED_FIELDS = ("log.original", "log.origin", "process.name", "process.thread.id")
STARTUP_EVENT = {"event": {"dataset": STARTUP, "kind": "event"}}  # the extra of start-up and lifecycle records
DOCUMENT = "wwts_document"  # the extra that carries an input's nested fields (the fast path)
BASE_KEYS = frozenset({"@timestamp", "ecs.version", "log", "process", "message"})  # what `_nested` starts from


def event_id() -> str:
    """128 random bits in hex. `random` (reseeded in a forked child) does not release the
    GIL as `uuid4()`'s `os.urandom` does, which a decode thread then waits to get back."""
    return "%032x" % random.getrandbits(128)  # noqa: UP031


def trace_id_hex(context: trace.SpanContext) -> str | None:
    """A span context's trace id as the 32 hex digits records and answers carry."""
    return trace.format_trace_id(context.trace_id) if context.is_valid else None


def trace_fields(context: trace.SpanContext) -> dict[str, Any]:
    """`trace.id` and `span.id` of a record made for a span (extra fields)."""
    return {"trace": {"id": trace.format_trace_id(context.trace_id)}, "span": {"id": trace.format_span_id(context.span_id)}}


class EcsFormatter(ecs_logging.StdlibFormatter):
    """ecs-logging's document plus what every wwts record carries: the service and host
    (derived from the process's OpenTelemetry resource), a unique `event.id` (the
    Elasticsearch `_id`, which makes re-sending safe), a dataset, and the trace ids of
    the span the record belongs to (given as extra fields, or else the current span)."""

    def __init__(self, static_fields: dict[str, Any]) -> None:
        super().__init__(ensure_ascii=False, exclude_fields=EXCLUDED_FIELDS, extra=static_fields)
        self.static_fields = static_fields
        # whether the static namespaces stay clear of the fast path's own (known once)
        self._static_apart = BASE_KEYS.isdisjoint(static_fields)

    def format(self, record: logging.LogRecord) -> str:
        """ecs-logging's JSON line (`@timestamp`, `log.level`, `message` first); the fast
        path's document is built in that order already, so it is dumped without sorting."""
        if getattr(record, DOCUMENT, None) is None:
            return super().format(record)
        document = self.format_to_ecs(record)
        level = document["log"].pop("level")
        line = {"@timestamp": document.pop("@timestamp"), "log.level": level, "message": document.pop("message")}
        line.update(document)
        return json.dumps(line, ensure_ascii=False, separators=(",", ":"), default=str)

    def format_to_ecs(self, record: logging.LogRecord) -> dict[str, Any]:
        fields = getattr(record, DOCUMENT, None)
        document = self._nested(record, fields) if fields is not None else super().format_to_ecs(record)
        event = document.setdefault("event", {})
        event.setdefault("id", event_id())
        event.setdefault("dataset", LOG)
        if "trace" not in document:
            context = trace.get_current_span().get_span_context()
            if context.is_valid:
                document.update(trace_fields(context))
        return document

    def _nested(self, record: logging.LogRecord, fields: Mapping[str, Any]) -> dict[str, Any]:
        """What ecs-logging's `format_to_ecs` makes of a record whose extras are `fields`
        (nested, no None leaves), built directly."""
        message = record.getMessage()
        document: dict[str, Any] = {
            "@timestamp": self._timestamp(record),
            "ecs.version": ecs_logging.ECS_VERSION,
            "log": {"level": record.levelname.lower(), "logger": record.name},
            "process": {"pid": record.process, "thread": {"name": record.threadName}},
            "message": message,
        }
        if self._static_apart and BASE_KEYS.isdisjoint(fields) and fields.keys().isdisjoint(self.static_fields):
            document.update(self.static_fields)  # top-level namespaces apart (the usual case): no walk
            document.update(fields)
            document["event"] = dict(document.get("event", ()))  # its own: `format_to_ecs` adds the id
        else:
            merge(document, self.static_fields)
            merge(document, fields)
        return document

    _second: int = -1
    _second_text: str = ""

    def _timestamp(self, record: logging.LogRecord) -> str:
        """ecs-logging's `@timestamp` (UTC, milliseconds), its seconds part formatted once
        per second."""
        second = int(record.created)
        if second != self._second:
            self._second, self._second_text = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return "%s.%03dZ" % (self._second_text, record.msecs)  # noqa: UP031 - ecs-logging's format


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
