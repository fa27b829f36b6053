"""A span exporter that appends OTLP-JSON lines to a daily file in the log directory.

The demo needs a real trace with no collector running. The format is the one the
Collector's file exporter writes (one ExportTraceServiceRequest per line, ids in hex),
so the same tools read both.

The JSON is built straight from the SDK's spans (`to_otlp_json`): going through the
protobuf messages and `MessageToDict` costs about 1 ms of pure-Python work per span,
which on a 2-core machine competes with inference for the interpreter and the cores.
The output is the same document, field for field (tests/test_telemetry_encoding.py compares
the two); anything the direct encoder does not know falls back to the protobuf path.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from telemetry.daily import DailyFiles

_ID_KEYS = ("traceId", "spanId", "parentSpanId")


def to_otlp_json(spans: Sequence[ReadableSpan]) -> dict[str, Any]:
    """One ExportTraceServiceRequest in OTLP/JSON (ids in hex), built directly."""
    try:
        return _encode_request(spans)
    except _Unsupported:
        return to_otlp_json_via_protobuf(spans)


def to_otlp_json_via_protobuf(spans: Sequence[ReadableSpan]) -> dict[str, Any]:
    """The reference encoding: the OTLP exporter's protobuf messages through MessageToDict."""
    from google.protobuf.json_format import MessageToDict
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

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


# -- the direct encoder: protobuf's JSON mapping of the OTLP messages, by hand ----------
# (fields in field-number order, proto3 defaults left out, 64-bit integers as strings,
# enums by name), which is what MessageToDict writes.

_KINDS = ("SPAN_KIND_UNSPECIFIED", "SPAN_KIND_INTERNAL", "SPAN_KIND_SERVER", "SPAN_KIND_CLIENT",
          "SPAN_KIND_PRODUCER", "SPAN_KIND_CONSUMER")
_STATUS_CODES = ("STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR")
_FLAGS_HAS_IS_REMOTE, _FLAGS_IS_REMOTE = 0x100, 0x200


class _Unsupported(Exception):
    """A value the direct encoder does not handle; the protobuf path will."""


def _value(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise _Unsupported(value)
        return {"doubleValue": value}
    if isinstance(value, (tuple, list)):
        return {"arrayValue": {"values": [_value(v) for v in value]} if value else {}}
    raise _Unsupported(type(value))


def _attributes(attributes: Any) -> list[dict[str, Any]]:
    return [{"key": key, "value": _value(value)} for key, value in attributes.items()] if attributes else []


def _put(target: dict[str, Any], key: str, value: Any) -> None:
    if value:
        target[key] = value


def _flags(parent: Any) -> int:
    return _FLAGS_HAS_IS_REMOTE | (_FLAGS_IS_REMOTE if parent is not None and parent.is_remote else 0)


def _span(span: ReadableSpan) -> dict[str, Any]:
    context = span.get_span_context()
    out: dict[str, Any] = {"traceId": format(context.trace_id, "032x"), "spanId": format(context.span_id, "016x")}
    if context.trace_state:
        out["traceState"] = ",".join(f"{k}={v}" for k, v in context.trace_state.items())
    parent = span.parent
    if parent is not None:
        out["parentSpanId"] = format(parent.span_id, "016x")
    _put(out, "name", span.name)
    _put(out, "kind", _KINDS[span.kind.value + 1])
    _put(out, "startTimeUnixNano", str(span.start_time) if span.start_time else "")
    _put(out, "endTimeUnixNano", str(span.end_time) if span.end_time else "")
    _put(out, "attributes", _attributes(span.attributes))
    _put(out, "droppedAttributesCount", span.dropped_attributes)
    events = []
    for event in span.events:
        encoded: dict[str, Any] = {}
        _put(encoded, "timeUnixNano", str(event.timestamp) if event.timestamp else "")
        _put(encoded, "name", event.name)
        _put(encoded, "attributes", _attributes(event.attributes))
        _put(encoded, "droppedAttributesCount", event.dropped_attributes)
        events.append(encoded)
    _put(out, "events", events)
    _put(out, "droppedEventsCount", span.dropped_events)
    links = []
    for link in span.links:
        encoded = {"traceId": format(link.context.trace_id, "032x"), "spanId": format(link.context.span_id, "016x")}
        _put(encoded, "attributes", _attributes(link.attributes))
        _put(encoded, "droppedAttributesCount", link.dropped_attributes)
        encoded["flags"] = _flags(link.context)
        links.append(encoded)
    _put(out, "links", links)
    _put(out, "droppedLinksCount", span.dropped_links)
    status: dict[str, Any] = {}
    if span.status is not None:
        _put(status, "message", span.status.description)
        _put(status, "code", _STATUS_CODES[span.status.status_code.value] if span.status.status_code.value else "")
    out["status"] = status
    out["flags"] = _flags(parent)
    return out


def _encode_request(spans: Sequence[ReadableSpan]) -> dict[str, Any]:
    groups: dict[int, tuple[Any, dict[int, tuple[Any, list[dict[str, Any]]]]]] = {}
    for span in spans:
        resource, scope = span.resource, span.instrumentation_scope or None
        _, scopes = groups.setdefault(id(resource), (resource, {}))
        scopes.setdefault(id(scope), (scope, []))[1].append(_span(span))
    resource_spans = []
    for resource, scopes in groups.values():
        scope_spans = []
        for scope, encoded in scopes.values():
            entry: dict[str, Any] = {"scope": _scope(scope), "spans": encoded}
            _put(entry, "schemaUrl", scope.schema_url if scope is not None else "")
            scope_spans.append(entry)
        item: dict[str, Any] = {"resource": _resource(resource), "scopeSpans": scope_spans}
        _put(item, "schemaUrl", resource.schema_url)
        resource_spans.append(item)
    return {"resourceSpans": resource_spans} if resource_spans else {}


_last_resource: list[Any] = [None, None]  # (resource, its encoding): one provider, one resource


def _resource(resource: Any) -> dict[str, Any]:
    if _last_resource[0] is not resource:
        encoded: dict[str, Any] = {}
        _put(encoded, "attributes", _attributes(resource.attributes))
        _last_resource[:] = [resource, encoded]
    return {key: list(value) for key, value in _last_resource[1].items()}  # the list is the caller's


def _scope(scope: Any) -> dict[str, Any]:
    encoded: dict[str, Any] = {}
    if scope is not None:
        _put(encoded, "name", scope.name)
        _put(encoded, "version", scope.version)
        _put(encoded, "attributes", _attributes(scope.attributes))
    return encoded


class OtlpJsonFileExporter(SpanExporter):
    def __init__(self, directory: Path, prefix: str = "traces") -> None:
        self.files = DailyFiles(directory, prefix)
        self._lock = threading.Lock()
        self.failed: OSError | None = None  # disk full or directory unwritable: warned once at the end

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
        except OSError as exc:
            self.failed = exc
            return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        with self._lock:
            try:
                self.files.close()
            except OSError as exc:
                self.failed = exc

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        with self._lock:
            try:
                self.files.flush()
            except OSError as exc:
                self.failed = exc
                return False
        return True
