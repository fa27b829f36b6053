"""The local files are what they claim to be: the trace file is real OTLP/JSON (it parses
into the protobuf message the collector takes, enums as integers, ids in hex), and a
record is ecs-logging's own document with wwts's fields added, nothing taken away."""

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

from telemetry.otlp_file import OtlpJsonFileExporter
from telemetry.records import EXCLUDED_FIELDS, EcsFormatter, trace_fields
from telemetry.trace_shipping import _base64_ids


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
            "event": {"dataset": "wwts.inference", "kind": "event", "category": ["file"], "type": ["info"], "outcome": "success",
                      "duration": 28200000},
            "file": {"path": "a/猫.jpg", "name": "猫.jpg", "size": 1234, "hash": {"md5": "0" * 32}},
            "wwts": {
                "model": {"name": "efficientnet-lite0"}, "device": "cpu",
                "latency_ms": {"load": 5.0, "preprocess": 3.0, "forward": 20.0, "postprocess": 0.2, "total": 28.2},
                "image": {"width": 1600, "height": 1067, "mode": "RGB", "format": "JPEG"},
                "resource": {"process": {"cpu": {"utilization": 0.5}, "memory": {"rss": 1}}},
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


def test_the_trace_file_is_otlp_json(spans, tmp_path) -> None:
    from google.protobuf.json_format import ParseDict
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    exporter = OtlpJsonFileExporter(tmp_path)
    exporter.export(spans)
    exporter.shutdown()
    [file] = tmp_path.glob("traces-*.jsonl")
    [line] = file.read_text(encoding="utf-8").splitlines()
    document = json.loads(line)
    encoded = [s for r in document["resourceSpans"] for g in r["scopeSpans"] for s in g["spans"]]
    assert len(encoded) == 5
    assert all(isinstance(s["kind"], int) for s in encoded)  # OTLP/JSON: enums as integers
    assert {s["traceId"] for s in encoded} == {format(s.context.trace_id, "032x") for s in spans}
    failing = next(s for s in encoded if s["name"] == "preprocess")
    assert failing["status"]["code"] == 2 and failing["events"][0]["name"] == "exception"
    message = ParseDict(_base64_ids(json.loads(line)), ExportTraceServiceRequest())
    assert sum(len(g.spans) for r in message.resource_spans for g in r.scope_spans) == 5


@pytest.mark.parametrize("make", RECORDS)
def test_a_record_is_ecs_loggings_document_plus_ours(make) -> None:
    static = {"service": {"name": "wwts", "version": "0.1.0"}, "host": {"name": "box"}}
    formatter = EcsFormatter(static)
    try:
        expected = ecs_logging.StdlibFormatter(extra=static, exclude_fields=EXCLUDED_FIELDS).format_to_ecs(make())
    except (TypeError, ValueError) as exc:  # ecs-logging refuses it: so do we
        with pytest.raises(type(exc)):
            formatter.format_to_ecs(make())
        return
    actual = formatter.format_to_ecs(make())
    added = {key for key in actual if key not in expected}
    assert added <= {"event", "trace", "span"}
    for key, value in expected.items():
        if key in ("@timestamp", "event"):
            continue
        assert actual[key] == value, key
    assert len(actual["event"]["id"]) == 32 and actual["event"]["dataset"]
    document = json.loads(formatter.format(make()))
    assert list(document)[:3] == ["@timestamp", "log.level", "message"]


def test_a_record_made_for_a_span_carries_its_ids(spans) -> None:
    formatter = EcsFormatter({"service": {"name": "wwts"}})
    context = spans[0].context
    document = formatter.format_to_ecs(_record("x", extra=trace_fields(context)))
    assert document["trace"]["id"] == format(context.trace_id, "032x")
    assert document["span"]["id"] == format(context.span_id, "016x")


def _inference_documents() -> list[dict]:
    """The fields of real inference records, from the one mapping: success and failure."""
    from pipeline.results import ImageInfo, Prediction, Result
    from telemetry.fields import derive

    good = Result(
        path="a/猫.jpg", model="efficientnet-lite0", file="/x/a/猫.jpg",
        image=ImageInfo("0" * 32, 1234, 1600, 1067, "RGB", "JPEG"),
        predictions=[Prediction(1, "虎斑猫", 0.4123, 281), Prediction(2, "埃及猫", 0.3, 285)],
        durations_ns={"load": 5_000_000, "preprocess": 3_000_123, "forward": 20_000_000, "postprocess": 200_000},
        trace_id="1" * 32, runtime="onnxruntime", device="cpu",
    )
    try:
        raise ValueError("broken pixels")
    except ValueError as exc:
        bad = Result(path="b.png", model="efficientnet-lite0", file="/x/b.png", error=exc,
                     durations_ns={"load": 1_500_000})
    extra = {"wwts": {"resource": {"process": {"cpu": {"utilization": 0.5}, "memory": {"rss": 1}}}},
             "trace": {"id": "1" * 32}, "span": {"id": "2" * 16}, "http": {"request": {"method": "POST"}}}
    return [derive(good, extra)[1], derive(bad, extra)[1]]


@pytest.mark.parametrize("index", [0, 1])
def test_the_fast_inference_document_is_ecs_loggings(index: int) -> None:
    """The fast path (fields merged once) gives what ecs-logging's generic walk gives for
    the same fields passed as extras: same document, field for field."""
    from telemetry.records import DOCUMENT

    fields = _inference_documents()[index]
    static = {"service": {"name": "wwts", "version": "0.1.0", "environment": "test"}, "host": {"name": "box"}}
    formatter = EcsFormatter(static)
    fast = formatter.format_to_ecs(_record("%s", "msg", extra={DOCUMENT: fields}))
    generic = ecs_logging.StdlibFormatter(extra=static, exclude_fields=EXCLUDED_FIELDS).format_to_ecs(
        _record("%s", "msg", extra=json.loads(json.dumps(fields)))
    )
    fast["event"].pop("id")
    assert fast.pop("@timestamp")[:19] == generic.pop("@timestamp")[:19]
    assert fast == generic
    line = json.loads(formatter.format(_record("%s", "msg", extra={DOCUMENT: fields})))
    assert list(line)[:3] == ["@timestamp", "log.level", "message"] and len(line["event"]["id"]) == 32


def _pipeline_spans(make_pipeline, data_dir) -> list:
    """The spans a real run makes: a batch of two (a linked forward), a failure, snapshots."""
    from telemetry.hooks import TelemetryHooks
    from telemetry.resources import ResourceSampler

    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "wwts"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    hooks = TelemetryHooks(provider.get_tracer("wwts", "0.1.0"), logging.getLogger("wwts.test-encoding"),
                           sampler=ResourceSampler())
    with make_pipeline(hooks, batch_size=2) as pipeline:
        list(pipeline.run([str(data_dir / "coffee.png"), str(data_dir / "camera.png"), "/nonexistent.png"]))
    return list(exporter.get_finished_spans())


def test_the_fast_span_encoder_writes_what_opentelemetry_writes(spans, make_pipeline, data_dir) -> None:
    from opentelemetry.sdk.trace import ReadableSpan

    from telemetry.otlp_json import SpanEncoder, official

    encoder = SpanEncoder()
    real = _pipeline_spans(make_pipeline, data_dir)
    assert {s.name for s in real} >= {"wwts.classify", "load", "preprocess", "forward", "postprocess"}
    for batch in (spans, spans[:1], real, real[:3], []):
        assert encoder.encode(batch) == official(batch)
    remote = trace.SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=trace.TraceFlags(1),
                               trace_state=trace.TraceState([("k", "v")]))
    served = ReadableSpan(name="POST /v1/classify", context=trace.SpanContext(0xABC, 0x123, False, trace_state=remote.trace_state),
                          parent=remote,
                          kind=trace.SpanKind.SERVER, resource=real[0].resource, attributes={"http.route": "/v1"},
                          start_time=1, end_time=2, links=[Link(remote)])
    assert encoder.encode([served]) == official([served])
    odd = ReadableSpan(name="odd", context=trace.SpanContext(1, 2, False), attributes={"raw": b"\x00", "nan": float("nan")},
                       resource=real[0].resource, start_time=1, end_time=2)
    assert encoder.encode([odd]) == official([odd])  # what it does not know, the official encoder writes
