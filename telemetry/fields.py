"""One declarative mapping from a `Result` to the `wwts.classify` span's attributes and
to the inference record's ECS fields.

Each row names a value once and says where it goes: a span attribute (a semantic
convention where one exists — `file.path`, `file.name`, `file.size`, `error.type` — else
`wwts.*`), an ECS field (a dotted path, ECS 1.6), or both.
Spans and records are derived from the same rows, so they cannot drift apart; the
template test holds the ECS side to the index template.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.results import Result
from pipeline.text import valid
from telemetry.names import INFERENCE

# ECS 1.6 categorisation of an inference over a file: category `file`, type `info`
EVENT_KIND, EVENT_CATEGORY, EVENT_TYPE = "event", ("file",), ("info",)
SUCCESS, FAILURE = "success", "failure"


def qualified_name(error: BaseException) -> str:
    """`module.QualName` (bare for builtins), the form OpenTelemetry's `record_exception`
    writes into `exception.type`; records and spans use the same."""
    kind = type(error)
    module = kind.__module__
    return f"{module}.{kind.__qualname__}" if module and module != "builtins" else kind.__qualname__


def stack_trace(error: BaseException) -> str:
    """The standard formatted traceback: header, frames, chained causes, final line."""
    return "".join(traceback.format_exception(error))


@dataclass(frozen=True)
class Field:
    span: str | None  # attribute on the wwts.classify span
    ecs: str | None  # dotted ECS path in the inference record
    value: Callable[[Result], Any]  # None means: leave the field out
    parts: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "parts", tuple(self.ecs.split(".")) if self.ecs else ())


def _image(name: str) -> Callable[[Result], Any]:
    return lambda r: getattr(r.image, name) if r.image is not None else None


def _top1(name: str) -> Callable[[Result], Any]:
    return lambda r: getattr(r.predictions[0], name) if r.ok and r.predictions else None


def _error(value: Callable[[BaseException], Any]) -> Callable[[Result], Any]:
    return lambda r: value(r.error) if r.error is not None else None


INPUT = Field("wwts.input", "wwts.input", lambda r: r.path)  # the input as given (relative, an upload's name)
FIELDS: tuple[Field, ...] = (
    INPUT,
    Field("file.path", "file.path", lambda r: r.file),  # absolute; None for uploads
    Field("file.name", "file.name", lambda r: os.path.basename(r.file or r.path)),
    Field("wwts.image.md5", "file.hash.md5", _image("md5")),
    Field("file.size", "file.size", _image("bytes")),
    Field("wwts.image.width", "wwts.image.width", _image("width")),
    Field("wwts.image.height", "wwts.image.height", _image("height")),
    Field("wwts.image.mode", "wwts.image.mode", _image("mode")),
    Field("wwts.image.format", "wwts.image.format", _image("format")),
    Field("wwts.model.name", "wwts.model.name", lambda r: r.model),
    Field("wwts.runtime", "wwts.runtime", lambda r: r.runtime),
    Field("wwts.device", "wwts.device", lambda r: r.device),
    Field("wwts.top1.label", "wwts.top1.label", _top1("label")),
    Field("wwts.top1.score", "wwts.top1.score", _top1("score")),
    Field("wwts.top1.class_id", "wwts.top1.class_id", _top1("class_id")),
    Field(None, "wwts.labels", lambda r: [p.as_dict() for p in r.predictions] if r.ok and r.predictions else None),
    Field(None, "wwts.latency_ms", lambda r: r.latency_ms()),
    Field(None, "event.duration", lambda r: r.total_ns),
    Field(None, "event.outcome", lambda r: SUCCESS if r.ok else FAILURE),
    Field("error.type", "error.type", _error(qualified_name)),
    Field(None, "error.message", _error(lambda e: valid(str(e)))),
    Field(None, "error.stack_trace", _error(lambda e: valid(stack_trace(e)))),
)


def derive(result: Result, *extras: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The span attributes and the record's fields (nested, as ecs-logging takes `extra`)
    of one result, each row's value computed once; `extras` (nested too: the HTTP
    request's, the resource snapshot, the trace ids) are merged into the record."""
    attributes: dict[str, Any] = {}
    document: dict[str, Any] = {
        "event": {"dataset": INFERENCE, "kind": EVENT_KIND, "category": list(EVENT_CATEGORY), "type": list(EVENT_TYPE)}
    }
    for row in FIELDS:
        value = row.value(result)
        if value is None:
            continue
        if row.span:
            attributes[row.span] = value
        if row.ecs:
            put(document, row.parts, value)
    for extra in extras:
        if extra:
            merge(document, extra)
    return attributes, document


def put(document: dict[str, Any], parts: tuple[str, ...], value: Any) -> None:
    node = document
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def merge(document: dict[str, Any], extra: Mapping[str, Any]) -> None:
    """`extra`'s leaves into `document`, nested mappings copied (never shared, so a later
    merge cannot change a snapshot's cached fields through the document)."""
    for key, value in extra.items():
        if isinstance(value, Mapping):
            node = document.get(key)
            if not isinstance(node, dict):
                node = document[key] = {}
            merge(node, value)
        else:
            document[key] = value
