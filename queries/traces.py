"""Read traces back from the traces index the Collector's Elasticsearch exporter
writes (mapping mode `none`: flat documents, `Duration` in microseconds, root spans
without `ParentSpanId`)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from queries.logs import since_to_date_math
from telemetry.names import CLASSIFY_SPAN, LOGS_INDEX_PATTERN, TRACES_INDEX_PATTERN
STATUS = {0: "UNSET", 1: "OK", 2: "ERROR"}


@dataclass
class SpanDoc:
    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    start: dt.datetime
    duration_ms: float
    status: str
    attributes: dict[str, Any]
    events: dict[str, Any]
    children: list[SpanDoc] = field(default_factory=list)

    @classmethod
    def from_source(cls, source: dict[str, Any]) -> SpanDoc:
        attributes = {k[len("Attributes.") :]: v for k, v in source.items() if k.startswith("Attributes.")}
        events = {k[len("Events.") :]: v for k, v in source.items() if k.startswith("Events.")}
        return cls(
            trace_id=source["TraceId"],
            span_id=source["SpanId"],
            parent_id=source.get("ParentSpanId") or None,
            name=source.get("Name", "?"),
            start=parse_time(source["@timestamp"]),
            duration_ms=float(source.get("Duration", 0)) / 1000.0,
            status=STATUS.get(int(source.get("TraceStatus", 0) or 0), str(source.get("TraceStatus"))),
            attributes=attributes,
            events=events,
        )


def parse_time(text: str) -> dt.datetime:
    """ISO time with nanoseconds (Python keeps microseconds)."""
    text = text.replace("Z", "+00:00")
    if "." in text:
        head, rest = text.split(".", 1)
        digits = "".join(ch for ch in rest if ch.isdigit())
        zone = rest[len(digits) :]
        text = f"{head}.{digits[:6].ljust(6, '0')}{zone}"
    return dt.datetime.fromisoformat(text)


def spans_of(client: Any, trace_id: str) -> list[SpanDoc]:
    response = client.search(
        index=TRACES_INDEX_PATTERN,
        query={"term": {"TraceId": trace_id.lower()}},
        sort=[{"@timestamp": {"order": "asc"}}],
        size=1000,
        ignore_unavailable=True,
        allow_no_indices=True,
    )
    return [SpanDoc.from_source(hit["_source"]) for hit in response["hits"]["hits"]]


def tree(spans: list[SpanDoc]) -> list[SpanDoc]:
    """Link children to parents; return the roots (spans whose parent is not here)."""
    by_id = {span.span_id: span for span in spans}
    roots = []
    for span in spans:
        parent = by_id.get(span.parent_id or "")
        if parent is None:
            roots.append(span)
        else:
            parent.children.append(span)
    for span in spans:
        span.children.sort(key=lambda s: s.start)
    return sorted(roots, key=lambda s: s.start)


def log_messages(client: Any, trace_id: str, limit: int = 50) -> list[dict[str, Any]]:
    response = client.search(
        index=LOGS_INDEX_PATTERN,
        query={"term": {"trace.id": trace_id.lower()}},
        sort=[{"@timestamp": {"order": "asc"}}],
        size=limit,
        ignore_unavailable=True,
        allow_no_indices=True,
    )
    return [hit["_source"] for hit in response["hits"]["hits"]]


def slow_traces(client: Any, min_ms: float, since: str, limit: int) -> list[tuple[SpanDoc, SpanDoc | None]]:
    """The slowest root `wwts.classify` spans, each with its slowest child stage."""
    response = client.search(
        index=TRACES_INDEX_PATTERN,
        query={
            "bool": {
                "filter": [
                    {"term": {"Name": CLASSIFY_SPAN}},
                    {"range": {"Duration": {"gte": min_ms * 1000.0}}},
                    {"range": {"@timestamp": {"gte": since_to_date_math(since)}}},
                ],
                "must_not": [{"exists": {"field": "ParentSpanId"}}],
            }
        },
        sort=[{"Duration": {"order": "desc"}}],
        size=limit,
        ignore_unavailable=True,
        allow_no_indices=True,
    )
    roots = [SpanDoc.from_source(hit["_source"]) for hit in response["hits"]["hits"]]
    if not roots:
        return []
    children = client.search(
        index=TRACES_INDEX_PATTERN,
        query={"terms": {"ParentSpanId": [root.span_id for root in roots]}},
        size=10 * len(roots),
        ignore_unavailable=True,
        allow_no_indices=True,
    )
    slowest: dict[str, SpanDoc] = {}
    for hit in children["hits"]["hits"]:
        child = SpanDoc.from_source(hit["_source"])
        parent = child.parent_id or ""
        if parent not in slowest or child.duration_ms > slowest[parent].duration_ms:
            slowest[parent] = child
    return [(root, slowest.get(root.span_id)) for root in roots]
