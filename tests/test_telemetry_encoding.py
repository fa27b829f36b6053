"""The fast encoders write exactly what the generic paths write: the trace file's direct
OTLP/JSON encoder vs protobuf's MessageToDict, the ECS formatter's fast path vs ecs-logging's."""

from __future__ import annotations

import json
import logging
import sys

import ecs_logging
import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, Status, StatusCode

from telemetry.otlp_file import to_otlp_json, to_otlp_json_via_protobuf
from telemetry.records import EcsFormatter, _SlowPath


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "wwts", "process.pid": 42}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("wwts", "0.1.0")
    root = tracer.start_span(
        "wwts.classify",
        context=trace.set_span_in_context(trace.INVALID_SPAN),
        attributes={"image.path": "a/猫.jpg", "image.bytes": 1234, "wwts.top1.score": 0.4123, "ok": True},
    )
    other = tracer.start_span("wwts.classify", context=trace.set_span_in_context(trace.INVALID_SPAN))
    child = tracer.start_span("load", context=trace.set_span_in_context(root), attributes={"process.cpu.utilization": 1.0})
    child.end()
    links = [Link(root.get_span_context(), {"wwts.batch.index": 0}), Link(other.get_span_context(), {"wwts.batch.index": 1})]
    batch = tracer.start_span("forward", context=trace.set_span_in_context(root), links=links, attributes={"wwts.batch.size": 2})
    batch.end()
    failing = tracer.start_span("preprocess", context=trace.set_span_in_context(other), attributes={"tags": ("a", "b"), "empty": ()})
    try:
        raise ValueError("broken pixels")
    except ValueError as exc:
        failing.record_exception(exc)
    failing.set_status(Status(StatusCode.ERROR, "ValueError: broken pixels"))
    failing.end()
    root.add_event("wwts.alert", {"wwts.alert.metric": "latency_ms", "wwts.alert.value": 1500.5})
    root.set_status(Status(StatusCode.OK))
    root.end()
    other.set_status(Status(StatusCode.ERROR))
    other.end()
    provider.shutdown()
    return exporter.get_finished_spans()


def test_direct_encoder_matches_protobuf_json(spans) -> None:
    assert len(spans) == 5
    assert to_otlp_json(spans) == to_otlp_json_via_protobuf(spans)
    assert to_otlp_json(spans[:1]) == to_otlp_json_via_protobuf(spans[:1])
    assert to_otlp_json([]) == to_otlp_json_via_protobuf([])


def test_unsupported_values_fall_back_to_protobuf(spans) -> None:
    span = spans[0]
    span._attributes = dict(span.attributes) | {"raw": b"\x00\x01", "nan": float("nan")}  # type: ignore[attr-defined]
    assert to_otlp_json([span]) == to_otlp_json_via_protobuf([span])


# -- ECS records -------------------------------------------------------------------------


def _record(msg: str, *args: object, level: int = logging.INFO, extra: dict | None = None, exc: bool = False):
    exc_info = None
    if exc:
        try:
            raise OSError(28, "No space left on device")
        except OSError:
            exc_info = sys.exc_info()
    record = logging.getLogger("wwts").makeRecord("wwts", level, __file__, 10, msg, args, exc_info, extra=extra)
    return record


RECORDS = [
    lambda: _record("plain %s", "message"),
    lambda: _record(
        "%s: %s (%.4f)", "a/猫.jpg", "虎斑猫", 0.4123,
        extra={
            "event": {"dataset": "wwts.inference", "kind": "event", "category": ["process"], "outcome": "success",
                      "duration": 28200000},
            "file": {"path": "a/猫.jpg", "name": "猫.jpg", "size": 1234, "hash": {"md5": "0" * 32}},
            "wwts": {
                "model": {"name": "efficientnet-lite0"}, "device": "cpu",
                "latency_ms": {"load": 5.0, "preprocess": 3.0, "forward": 20.0, "postprocess": 0.2, "total": 28.2},
                "image": {"width": 1600, "height": 1067, "mode": "RGB", "format": "JPEG"},
                "resource": {"process": {"cpu_percent": 100.0, "rss_bytes": 1}, "system": {"memory_used_bytes": 2,
                             "memory_percent": 3.0}, "gpu": []},
                "labels": [{"rank": 1, "label": "虎斑猫", "score": 0.4123, "class_id": 281}],
                "top1": {"label": "虎斑猫", "score": 0.4123, "class_id": 281},
            },
        },
    ),
    lambda: _record("alert", level=logging.WARNING, extra={"event": {"dataset": "wwts.alert", "kind": "alert"},
                                                            "wwts": {"alert": {"metric": "latency_ms", "value": None}}}),
    lambda: _record("startup", extra={"event": {"dataset": "wwts.startup"}, "wwts": {"startup": {"gpu": [], "x": {}}}}),
    lambda: _record("failed", level=logging.ERROR, exc=True, extra={"event": {"outcome": "failure"}}),
    lambda: _record("dotted", extra={"wwts": {"a.b": 1}}),
    lambda: _record("clash", extra={"service": {"name": "other"}}),
]


@pytest.mark.parametrize("make", RECORDS)
def test_fast_ecs_document_matches_ecs_logging(make) -> None:
    formatter = EcsFormatter("wwts", "0.1.0")
    record = make()
    try:
        expected = ecs_logging.StdlibFormatter.format_to_ecs(formatter, record)
    except (TypeError, ValueError) as exc:  # ecs-logging refuses it: so must we
        with pytest.raises(type(exc)):
            formatter.format_to_ecs(make())
        return
    try:
        actual = formatter._fast_document(record)
    except _SlowPath:
        actual = None  # ecs-logging's own path: equal by construction
    if actual is not None:
        assert actual == expected
    line = formatter.format(make())
    document = json.loads(line)
    assert list(document)[:3] == ["@timestamp", "log.level", "message"]
    assert len(document["event"]["id"]) == 32 and document["service"] == {"name": "wwts", "version": "0.1.0"}


def test_inference_records_take_the_fast_path() -> None:
    formatter = EcsFormatter("wwts", "0.1.0")
    assert formatter._fast_document(RECORDS[1]())["wwts"]["top1"]["label"] == "虎斑猫"
