"""Incident-review queries over the log index: the Elasticsearch twins of the KQL
searches a reviewer types in Kibana (see deploy/elk/kibana)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from telemetry.names import LOGS_INDEX_PATTERN
_SINCE = re.compile(r"^(\d+)([smhdw])$")


@dataclass(frozen=True)
class LogQuery:
    md5: str | None = None
    label: str | None = None
    min_latency_ms: float | None = None
    level: str | None = None
    trace_id: str | None = None
    since: str | None = "24h"
    limit: int = 20


def since_to_date_math(since: str) -> str:
    """'24h' → 'now-24h' (Elasticsearch date math); refuses anything else clearly."""
    match = _SINCE.match(since.strip())
    if not match:
        raise ValueError(f"--since {since!r}: use a number and a unit s, m, h, d or w (e.g. 30m, 24h, 7d)")
    return f"now-{match[1]}{match[2]}"


def build(query: LogQuery) -> dict[str, Any]:
    """The search body: filters only (no scoring), newest first."""
    filters: list[dict[str, Any]] = []
    if query.md5:
        filters.append({"term": {"file.hash.md5": query.md5.lower()}})
    if query.label:
        # top-1 or any of the top-k
        filters.append(
            {
                "bool": {
                    "should": [{"term": {"wwts.top1.label": query.label}}, {"term": {"wwts.labels.label": query.label}}],
                    "minimum_should_match": 1,
                }
            }
        )
    if query.min_latency_ms is not None:
        filters.append({"range": {"wwts.latency_ms.total": {"gte": query.min_latency_ms}}})
    if query.level:
        filters.append({"term": {"log.level": query.level.lower()}})
    if query.trace_id:
        filters.append({"term": {"trace.id": query.trace_id.lower()}})
    if query.since:
        filters.append({"range": {"@timestamp": {"gte": since_to_date_math(query.since)}}})
    return {
        "query": {"bool": {"filter": filters}},
        "sort": [{"@timestamp": {"order": "desc"}}],
        "size": query.limit,
    }


def run(client: Any, query: LogQuery) -> list[dict[str, Any]]:
    response = client.search(index=LOGS_INDEX_PATTERN, ignore_unavailable=True, allow_no_indices=True, **build(query))
    return [hit["_source"] for hit in response["hits"]["hits"]]
