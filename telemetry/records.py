"""ECS JSON records: a formatter that adds the fields every wwts record carries, and a
handler that appends them to the daily files.

Records are plain `logging` records; what makes them ECS documents lives here, so the
runner only says `log.info(message, extra={...})`.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ecs_logging
from opentelemetry import trace

from telemetry.daily import DailyFiles

LOGGER_NAME = "wwts"
# fields left out of every record; the fast path below builds exactly the rest
_FAST_PATH_EXCLUDES = frozenset({"log.original", "process.name", "process.thread.id", "log.origin"})
RECORD_PREFIX = "wwts"


class EcsFormatter(ecs_logging.StdlibFormatter):
    """ecs-logging's formatter plus service/host fields, a unique `event.id`, and the
    active span's `trace.id`/`span.id` (ecs-logging only knows Elastic APM's)."""

    def __init__(self, service_name: str, service_version: str) -> None:
        super().__init__(
            ensure_ascii=False,
            exclude_fields=sorted(_FAST_PATH_EXCLUDES),
            extra={
                "service": {"name": service_name, "version": service_version},
                "host": {"name": socket.gethostname()},
            },
        )

    def format_to_ecs(self, record: logging.LogRecord) -> dict[str, Any]:
        try:
            document = self._fast_document(record)
        except _SlowPath:
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

    # -- the same document as ecs-logging's `format_to_ecs`, without its per-field dict
    # merging (about a third of a millisecond per record, on the inference thread).
    # Records with an exception or stack, or with extras the generic path treats
    # specially (excluded prefixes, elasticapm_*), take ecs-logging's own path;
    # tests/test_telemetry_encoding.py checks that both give the same document.

    _RESERVED_EXTRAS = frozenset({"log", "process", "ecs", "error", "message", "@timestamp"})

    def _fast_document(self, record: logging.LogRecord) -> dict[str, Any]:
        if record.exc_info or record.stack_info or self._exclude_fields != _FAST_PATH_EXCLUDES:
            raise _SlowPath
        message = record.getMessage()
        record.message = message  # as ecs-logging (and logging.Formatter) leave it
        document: dict[str, Any] = {
            "@timestamp": self._timestamp(record),
            "ecs.version": ecs_logging.ECS_VERSION,
            "log": {"level": record.levelname.lower(), "logger": record.name},
            "process": {"pid": record.process, "thread": {"name": record.threadName}},
        }
        if record.levelname is None or record.name is None or record.process is None or record.threadName is None:
            raise _SlowPath
        reserved = self._LOGRECORD_DICT
        for key, value in record.__dict__.items():
            if key in reserved:
                continue
            if key in self._RESERVED_EXTRAS or key.startswith("elasticapm") or "." in key:
                raise _SlowPath
            _merge_leaves(document, key, value)
        if self._extra is not None:
            for key, value in self._extra.items():
                _merge_static(document, key, value)
        document.setdefault("message", message)
        return document

    def _timestamp(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:
            self._second, self._second_text = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return "%s.%03dZ" % (self._second_text, record.msecs)  # noqa: UP031 - ecs-logging's format

    _second: int = -1
    _second_text: str = ""


class _SlowPath(Exception):
    """This record goes through ecs-logging's generic `format_to_ecs`."""


def _merge_leaves(document: dict[str, Any], key: str, value: Any) -> None:
    """Insert a record extra as ecs-logging does: nested mappings flattened to leaves,
    None leaves dropped, each leaf placed at its dotted path; a clash means the slow path."""
    if isinstance(value, Mapping):
        for child_key, child in value.items():
            if not isinstance(child_key, str) or "." in child_key:
                raise _SlowPath
            _merge_leaves(document, f"{key}.{child_key}", child)
        return
    if value is None:
        return
    node = document
    *parents, last = key.split(".")
    for part in parents:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise _SlowPath
        node = child
    if last in node and node[last] != {}:
        raise _SlowPath
    node[last] = value


def _merge_static(document: dict[str, Any], key: str, value: Any) -> None:
    """The formatter's static extras (service, host): merged as given, dicts deep-merged."""
    if isinstance(value, dict):
        node = document.setdefault(key, {})
        if not isinstance(node, dict):
            raise _SlowPath
        for child_key, child in value.items():
            _merge_static(node, child_key, child)
        return
    if value is None:
        return
    if key in document and document[key] != {}:
        raise _SlowPath
    document[key] = value


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
