"""OTLP/JSON of finished spans, built directly: the fast path of the local trace file.

OpenTelemetry's own encoder (`opentelemetry-exporter-otlp-json-common`, pinned) builds
typed message objects and then their dicts: ~0.14 ms per image's five spans, 1.5 % of an
image at ONNX Runtime's speed on 2 cores, in a thread that competes with the decoder for
the interpreter (benchmarks/README.md). This writes the same document in one pass. It
knows the value types spans carry (str, bool, int, float, homogeneous arrays); for any
other value it hands the batch to the official encoder. `tests/test_telemetry_encoding.py`
holds the two equal, field for field.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from opentelemetry.exporter.otlp.json.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import format_span_id, format_trace_id

HAS_IS_REMOTE, IS_REMOTE = 0x100, 0x200  # SpanFlags: the parent's is_remote is known / true


class Unsupported(Exception):
    """A value this encoder does not write; the official encoder will."""


def official(spans: Sequence[ReadableSpan]) -> dict[str, Any]:
    """The reference: OpenTelemetry's encoder."""
    return encode_spans(spans).to_dict()


class SpanEncoder:
    """One ExportTraceServiceRequest per batch. The resource's encoding is kept between
    batches (a process has one resource); everything else is encoded per span."""

    def __init__(self) -> None:
        self._resource: Any = None
        self._resource_json: dict[str, Any] = {}

    def encode(self, spans: Sequence[ReadableSpan]) -> dict[str, Any]:
        try:
            return self._request(spans)
        except Unsupported:
            return official(spans)

    def _request(self, spans: Sequence[ReadableSpan]) -> dict[str, Any]:
        groups: dict[int, tuple[Any, dict[int, tuple[Any, list[dict[str, Any]]]]]] = {}
        for span in spans:
            resource, scope = span.resource, span.instrumentation_scope or None
            scopes = groups.setdefault(id(resource), (resource, {}))[1]
            scopes.setdefault(id(scope), (scope, []))[1].append(_span(span))
        resource_spans = []
        for resource, scopes in groups.values():
            scope_spans = []
            for scope, encoded in scopes.values():
                entry: dict[str, Any] = {"scope": _scope(scope), "spans": encoded}
                _put(entry, "schemaUrl", scope.schema_url if scope is not None else "")
                scope_spans.append(entry)
            item: dict[str, Any] = {"resource": self._resource_of(resource), "scopeSpans": scope_spans}
            _put(item, "schemaUrl", resource.schema_url)
            resource_spans.append(item)
        return {"resourceSpans": resource_spans} if resource_spans else {}

    def _resource_of(self, resource: Any) -> dict[str, Any]:
        if self._resource is not resource:
            encoded: dict[str, Any] = {}
            _put(encoded, "attributes", _attributes(resource.attributes))
            self._resource, self._resource_json = resource, encoded
        return dict(self._resource_json)


def _value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        if not math.isfinite(value):
            raise Unsupported(value)
        return {"doubleValue": value}
    if isinstance(value, (tuple, list)):
        return {"arrayValue": {"values": [_value(v) for v in value]} if value else {}}
    raise Unsupported(type(value))


def _attributes(attributes: Any) -> list[dict[str, Any]]:
    return [{"key": key, "value": _value(value)} for key, value in attributes.items()] if attributes else []


def _put(target: dict[str, Any], key: str, value: Any) -> None:
    if value:
        target[key] = value


def _flags(context: Any) -> int:
    return HAS_IS_REMOTE | (IS_REMOTE if context is not None and context.is_remote else 0)


def _span(span: ReadableSpan) -> dict[str, Any]:
    context = span.get_span_context()
    out: dict[str, Any] = {"traceId": format_trace_id(context.trace_id), "spanId": format_span_id(context.span_id)}
    if context.trace_state:
        out["traceState"] = context.trace_state.to_header()
    parent = span.parent
    if parent is not None:
        out["parentSpanId"] = format_span_id(parent.span_id)
    out["flags"] = _flags(parent)
    _put(out, "name", span.name)
    _put(out, "kind", span.kind.value + 1)  # the SDK counts from INTERNAL = 0, OTLP from UNSPECIFIED = 0
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
        encoded = {"traceId": format_trace_id(link.context.trace_id), "spanId": format_span_id(link.context.span_id)}
        _put(encoded, "attributes", _attributes(link.attributes))
        _put(encoded, "droppedAttributesCount", link.dropped_attributes)
        encoded["flags"] = _flags(link.context)
        links.append(encoded)
    _put(out, "links", links)
    _put(out, "droppedLinksCount", span.dropped_links)
    status: dict[str, Any] = {}
    if span.status is not None:
        _put(status, "message", span.status.description)
        _put(status, "code", span.status.status_code.value)
    out["status"] = status
    return out


def _scope(scope: Any) -> dict[str, Any]:
    encoded: dict[str, Any] = {}
    if scope is not None:
        _put(encoded, "name", scope.name)
        _put(encoded, "version", scope.version)
        _put(encoded, "attributes", _attributes(scope.attributes))
    return encoded
