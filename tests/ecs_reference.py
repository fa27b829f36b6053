"""The Elastic Common Schema definitions wwts uses, as the conformance test checks them.

Source: elastic/ecs, `generated/ecs/ecs_flat.yml` at tag v1.6.0 — the ECS version that
ecs-logging declares in every record (`ecs.version: 1.6.0`). One field comes from a later
version and says so: `service.environment` (ECS 1.12.0, beta, keyword), where the
OpenTelemetry resource's `deployment.environment.name` belongs. Types are those of the
mapping (ECS "type"); `text` lists the field's `.text` multi-field where ECS defines one;
`allowed` the ECS allowed values where ECS restricts them.
"""

from __future__ import annotations

from dataclasses import dataclass

ECS_VERSION = "1.6.0"
NAMESPACES = frozenset(
    {"@timestamp", "message", "ecs", "log", "service", "host", "process", "event", "file", "error", "trace", "span",
     "transaction", "http", "url", "user_agent", "labels", "tags"}
)


@dataclass(frozen=True)
class Definition:
    type: str
    text: bool = False  # a `<field>.text` multi-field of type text
    allowed: frozenset[str] | None = None
    since: str = ECS_VERSION


def _d(type_: str, text: bool = False, allowed: tuple[str, ...] | None = None, since: str = ECS_VERSION) -> Definition:
    return Definition(type_, text, frozenset(allowed) if allowed else None, since)


ECS: dict[str, Definition] = {
    "@timestamp": _d("date"),
    "message": _d("text"),
    "ecs.version": _d("keyword"),
    "log.level": _d("keyword"),
    "log.logger": _d("keyword"),
    "log.origin.file.name": _d("keyword"),
    "log.origin.file.line": _d("integer"),
    "log.origin.function": _d("keyword"),
    "service.name": _d("keyword"),
    "service.version": _d("keyword"),
    "service.environment": _d("keyword", since="1.12.0"),
    "host.name": _d("keyword"),
    "host.architecture": _d("keyword"),
    "process.pid": _d("long"),
    "process.thread.id": _d("long"),
    "process.thread.name": _d("keyword"),
    "event.id": _d("keyword"),
    "event.dataset": _d("keyword"),
    "event.kind": _d("keyword", allowed=("alert", "event", "metric", "state", "pipeline_error", "signal")),
    "event.category": _d(
        "keyword",
        allowed=("authentication", "database", "driver", "file", "host", "iam", "intrusion_detection", "malware",
                 "network", "package", "process", "web"),
    ),
    "event.type": _d(
        "keyword",
        allowed=("access", "admin", "allowed", "change", "connection", "creation", "deletion", "denied", "end", "error",
                 "group", "info", "installation", "protocol", "start", "user"),
    ),
    "event.outcome": _d("keyword", allowed=("failure", "success", "unknown")),
    "event.duration": _d("long"),
    "file.path": _d("keyword", text=True),
    "file.name": _d("keyword"),
    "file.size": _d("long"),
    "file.hash.md5": _d("keyword"),
    "error.type": _d("keyword"),
    "error.message": _d("text"),
    "error.stack_trace": _d("keyword", text=True),
    "trace.id": _d("keyword"),
    "span.id": _d("keyword"),
    "transaction.id": _d("keyword"),
    "http.request.method": _d("keyword"),
    "http.response.status_code": _d("long"),
    "url.path": _d("keyword"),
    "user_agent.original": _d("keyword", text=True),
}
# ECS says an event.category value goes with some event.type values only
CATEGORY_TYPES = {"file": frozenset({"change", "creation", "deletion", "info"}),
                  "web": frozenset({"access", "error", "info"})}
