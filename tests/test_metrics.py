"""Metrics: the pipeline instruments and their exemplars in process (InMemoryMetricReader),
the resource gauges, the advised HTTP buckets, the Prometheus text; then real runs: the
local OTLP/JSON file, the series over OTLP in Elasticsearch (`wwts-metrics*`, through the
real collector), and an exemplar whose trace `wwts trace show` opens."""

from __future__ import annotations

import glob
import io
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import Counter, Histogram, ObservableCounter, UpDownCounter
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from pipeline.defaults import FORWARD, LOAD, POSTPROCESS, PREPROCESS
from pipeline.results import Prediction, Result
from telemetry import metrics
from telemetry.config import OtelConfig
from telemetry.hooks import TelemetryHooks
from telemetry.names import CLASSIFY_SPAN
from telemetry.resources import GpuReading, ResourceSampler
from tests.conftest import run_wwts, unique_photos

STAGES = (LOAD, PREPROCESS, FORWARD, POSTPROCESS)
NO_EXPORT = {"OTEL_METRICS_EXPORTER": "none", "OTEL_TRACES_EXPORTER": "none"}
# the stable HTTP semantic conventions' advised boundaries for http.server.request.duration
HTTP_ADVISED = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0]
MS = 1_000_000  # ns
TOP = [Prediction(1, "虎斑猫", 0.5, 281)]


# -- in process ---------------------------------------------------------------------------


class Harness:
    """TelemetryHooks on an SDK tracer (spans kept in memory) and a meter provider read by
    an InMemoryMetricReader: the driver's calls, made by hand."""

    def __init__(self, tmp_path: Path, sampled: bool = True) -> None:
        self.spans = InMemorySpanExporter()
        tracer_provider = TracerProvider(sampler=None if sampled else ALWAYS_OFF)
        tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        setup = metrics.make_meter_provider(
            Resource.create({}), OtelConfig.from_env(NO_EXPORT), tmp_path, readers=[self.reader]
        )
        self.provider = setup.provider
        self.meter = metrics.meter(setup.provider, "test")
        self.hooks = TelemetryHooks(
            tracer_provider.get_tracer("test"), _quiet_logger(), metrics=metrics.PipelineMetrics(self.meter)
        )

    def collect(self) -> dict[str, list[Any]]:
        """Every metric's points, read once: a collection also empties the exemplar reservoirs."""
        points: dict[str, list[Any]] = {}
        for resource in self.reader.get_metrics_data().resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    points.setdefault(metric.name, []).extend(metric.data.data_points)
        return points

    def finished(self) -> dict[int, Any]:
        return {span.context.span_id: span for span in self.spans.get_finished_spans()}


def _quiet_logger():
    import logging

    logger = logging.getLogger(f"wwts-test-{uuid.uuid4().hex}")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    return logger


def _run_a_batch(h: Harness) -> list[Any]:
    """Three inputs: two loaded (0.2 ms, 20 ms), forwarded together, one failing at load (2 ms)."""
    requests = [h.hooks.begin(f"img{i}.png") for i in range(3)]
    load_ns = [200_000, 20 * MS, 2 * MS]
    for request in requests[:2]:
        with h.hooks.stage(request, LOAD):
            pass
        with h.hooks.stage(request, PREPROCESS):
            pass
    with pytest.raises(ValueError), h.hooks.stage(requests[2], LOAD):
        raise ValueError("not an image")
    with h.hooks.batch_stage(requests[:2], FORWARD):
        pass
    for request in requests[:2]:
        with h.hooks.stage(request, POSTPROCESS):
            pass
    for index, request in enumerate(requests):
        result = Result(path=f"img{index}.png", model="efficientnet-lite0", runtime="onnxruntime")
        result.durations_ns[LOAD] = load_ns[index]
        if index < 2:
            result.durations_ns.update({PREPROCESS: 3 * MS, FORWARD: 30 * MS, POSTPROCESS: 100_000})
            result.predictions = TOP
        else:
            result.error = ValueError("not an image")
        h.hooks.finish(request, result)
    return requests


def test_stage_histograms_count_every_stage_run_with_the_contract_attributes(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    _run_a_batch(h)
    by_stage = {p.attributes[metrics.STAGE]: p for p in h.collect()[metrics.STAGE_DURATION]}
    assert {name: p.count for name, p in by_stage.items()} == {LOAD: 3, PREPROCESS: 2, FORWARD: 2, POSTPROCESS: 2}
    for name, point in by_stage.items():
        assert dict(point.attributes) == {
            metrics.STAGE: name, metrics.MODEL: "efficientnet-lite0", metrics.RUNTIME: "onnxruntime"
        }
        assert list(point.explicit_bounds) == list(metrics.STAGE_BUCKETS_S)
    assert by_stage[LOAD].sum == pytest.approx(0.0002 + 0.02 + 0.002)
    assert by_stage[FORWARD].sum == pytest.approx(0.06)


def test_exemplars_name_the_span_each_figure_measures(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    requests = _run_a_batch(h)
    spans = h.finished()
    traces = {r.span.get_span_context().trace_id for r in requests}
    points = h.collect()
    by_stage = {p.attributes[metrics.STAGE]: p for p in points[metrics.STAGE_DURATION]}
    # three load figures in three buckets: three exemplars, each the load span of its own trace
    loads = by_stage[LOAD].exemplars
    assert len(loads) == 3
    assert {e.trace_id for e in loads} == traces
    for exemplar in loads:
        span = spans[exemplar.span_id]
        assert span.name == LOAD and span.context.trace_id == exemplar.trace_id
    # forward ran once for both: each input's figure points into its own trace (the batch
    # span lives in the first input's trace; the second's exemplar is its classify span)
    assert by_stage[FORWARD].exemplars
    for exemplar in by_stage[FORWARD].exemplars:
        span = spans[exemplar.span_id]
        assert span.context.trace_id == exemplar.trace_id
        assert span.name in (FORWARD, CLASSIFY_SPAN)
    [batch] = points[metrics.BATCH_SIZE]
    assert (batch.count, batch.sum) == (1, 2)
    [exemplar] = batch.exemplars
    assert spans[exemplar.span_id].name == FORWARD


def test_images_count_by_outcome_and_error_type(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    _run_a_batch(h)
    points = h.collect()[metrics.IMAGES]
    counts = {tuple(sorted(p.attributes.items())): p.value for p in points}
    assert counts == {
        ((metrics.OUTCOME, "success"),): 2,
        ((metrics.ERROR_TYPE, "ValueError"), (metrics.OUTCOME, "failure")): 1,
    }
    assert all(len(p.exemplars) == 1 for p in points)


def test_no_exemplar_without_a_sampled_span(tmp_path: Path) -> None:
    h = Harness(tmp_path, sampled=False)
    _run_a_batch(h)
    points = h.collect()
    assert points[metrics.STAGE_DURATION] and points[metrics.IMAGES]
    assert all(not p.exemplars for name in (metrics.STAGE_DURATION, metrics.IMAGES) for p in points[name])


class FakeNvml:
    def read(self) -> tuple[GpuReading, ...]:
        return (GpuReading(0, "NVIDIA H200", 3 * 2**30, 141 * 2**30, 0.5, 47.0),)

    def names(self) -> list[str]:
        return ["NVIDIA H200"]


def test_resource_gauges_use_the_semantic_convention_names(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    metrics.observe_resources(h.meter, ResourceSampler(nvml=FakeNvml()))  # type: ignore[arg-type]
    values = {}
    points = h.collect()
    for name in (metrics.PROCESS_CPU_UTILIZATION, metrics.PROCESS_MEMORY_USAGE, metrics.SYSTEM_MEMORY_USAGE,
                 metrics.SYSTEM_MEMORY_UTILIZATION, metrics.GPU_MEMORY_USAGE, metrics.GPU_MEMORY_LIMIT,
                 metrics.GPU_UTILIZATION, metrics.GPU_TEMPERATURE):
        [point] = points[name]
        values[name] = (point.value, dict(point.attributes))
    assert values[metrics.PROCESS_MEMORY_USAGE][0] > 0
    assert values[metrics.SYSTEM_MEMORY_USAGE][1] == {"system.memory.state": "used"}
    assert values[metrics.GPU_MEMORY_USAGE] == (3 * 2**30, {"hw.id": "gpu0", "hw.type": "gpu", "hw.name": "NVIDIA H200"})
    assert values[metrics.GPU_MEMORY_LIMIT][0] == 141 * 2**30
    assert values[metrics.GPU_UTILIZATION] == (
        0.5, {"hw.id": "gpu0", "hw.type": "gpu", "hw.name": "NVIDIA H200", "hw.gpu.task": "general"}
    )
    temperature, attributes = values[metrics.GPU_TEMPERATURE]
    assert temperature == 47.0
    assert attributes["hw.type"] == "temperature" and attributes["hw.parent"] == "gpu0"


def test_no_gpu_no_gpu_series(tmp_path: Path) -> None:
    class NoGpu(FakeNvml):
        def read(self) -> tuple[GpuReading, ...]:
            return ()

    h = Harness(tmp_path)
    metrics.observe_resources(h.meter, ResourceSampler(nvml=NoGpu()))  # type: ignore[arg-type]
    points = h.collect()
    assert points[metrics.PROCESS_CPU_UTILIZATION]
    assert not points.get(metrics.GPU_TEMPERATURE) and not points.get(metrics.GPU_MEMORY_USAGE)


def test_http_server_duration_has_the_advised_buckets_and_the_request_trace(tmp_path: Path, monkeypatch) -> None:
    """What `wwts serve` gets from FastAPI's instrumentation with this meter provider."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from opentelemetry.instrumentation import _semconv
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    stability = _semconv._OpenTelemetrySemanticConventionStability
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "http")
    monkeypatch.setattr(stability, "_initialized", False)
    monkeypatch.setattr(stability, "_OTEL_SEMCONV_STABILITY_SIGNAL_MAPPING", {})
    h = Harness(tmp_path)
    tracer_provider = TracerProvider()
    spans = InMemorySpanExporter()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    app = FastAPI()

    @app.get("/healthz")
    def healthz() -> dict[str, bool]:
        return {"ok": True}

    FastAPIInstrumentor.instrument_app(app, tracer_provider=tracer_provider, meter_provider=h.provider)
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
    [point] = h.collect()[metrics.HTTP_SERVER_DURATION]
    assert list(point.explicit_bounds) == HTTP_ADVISED
    assert point.attributes["http.route"] == "/healthz" and point.attributes["http.response.status_code"] == 200
    [server] = [s for s in spans.get_finished_spans() if s.kind.name == "SERVER"]
    assert [e.trace_id for e in point.exemplars] == [server.context.trace_id]


def test_prometheus_text_of_a_telemetry_session(tmp_path: Path) -> None:
    from telemetry.session import Telemetry, TelemetryConfig

    telemetry = Telemetry(TelemetryConfig(
        log_dir=tmp_path / "logs", service_version="0.0.0-test", console=io.StringIO(), prometheus=True,
        otel=OtelConfig.from_env(NO_EXPORT),
    )).start()
    try:
        hooks = telemetry.hooks()
        request = hooks.begin("a.png")
        with hooks.stage(request, LOAD):
            pass
        hooks.finish(request, Result(path="a.png", model="efficientnet-lite0", runtime="onnxruntime",
                                     durations_ns={LOAD: 2 * MS}, predictions=TOP))
        telemetry.observe_queue_depth(lambda: 3)
        text = telemetry.prometheus_text().decode()
    finally:
        telemetry.shutdown()
    lines = text.splitlines()
    assert any(line.startswith("wwts_stage_duration_seconds_bucket{") and 'wwts_stage="load"' in line for line in lines)
    assert any(line.startswith("wwts_images_total{") and 'event_outcome="success"' in line for line in lines)
    assert any(line.startswith("wwts_queue_depth") and line.endswith(" 3.0") for line in lines)
    for name in ("process_cpu_utilization{", "process_memory_usage_bytes{", "system_memory_usage_bytes{"):
        assert any(line.startswith(name) for line in lines), name
    assert 'service_name="wwts"' in text  # the session's one resource (target_info)


def test_temporality_preference() -> None:
    delta, cumulative = AggregationTemporality.DELTA, AggregationTemporality.CUMULATIVE
    assert OtelConfig.from_env({}).metric_temporality == "delta"
    assert OtelConfig.from_env({"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "Cumulative"}).metric_temporality == "cumulative"
    table = metrics.temporality("delta")
    assert (table[Counter], table[Histogram], table[ObservableCounter], table[UpDownCounter]) == (
        delta, delta, delta, cumulative)
    assert set(metrics.temporality("cumulative").values()) == {cumulative}
    assert metrics.temporality("lowmemory")[ObservableCounter] == cumulative
    assert metrics.temporality("lowmemory")[Histogram] == delta


# -- real runs ----------------------------------------------------------------------------


def _inputs(folder: Path, good: int) -> tuple[list[str], Path]:
    photos = [str(p) for p in unique_photos(folder / "photos", good)]
    bad = folder / "bad.jpg"
    bad.write_text("not an image\n")
    return [*photos, str(bad)], bad


def _classify(inputs: list[str], logs: Path, env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    result = run_wwts("classify", *inputs, "--json", "--log-dir", str(logs), env=env)
    assert result.returncode == 1, result.stderr  # the bad input fails, the others run
    return [json.loads(line) for line in result.stdout.splitlines()]


def _otlp_json_lines(logs: Path, prefix: str) -> list[dict[str, Any]]:
    return [json.loads(line) for file in sorted(glob.glob(str(logs / f"{prefix}-*.jsonl")))
            for line in Path(file).read_text().splitlines() if line.strip()]


def _metric_points(documents: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    points = []
    for document in documents:
        for resource in document["resourceMetrics"]:
            for scope in resource["scopeMetrics"]:
                for metric in scope["metrics"]:
                    if metric["name"] == name:
                        kind = next(k for k in ("histogram", "sum", "gauge") if k in metric)
                        points += metric[kind]["dataPoints"]
    return points


def _attributes(point: dict[str, Any]) -> dict[str, Any]:
    return {a["key"]: next(iter(a["value"].values())) for a in point.get("attributes", [])}


def _stage_counts(points: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for point in points:
        stage = _attributes(point)[metrics.STAGE]
        counts[stage] = counts.get(stage, 0) + int(point["count"])
    return counts


def _image_counts(points: list[dict[str, Any]]) -> dict[tuple[str, str | None], int]:
    counts: dict[tuple[str, str | None], int] = {}
    for point in points:
        attributes = _attributes(point)
        key = (attributes[metrics.OUTCOME], attributes.get(metrics.ERROR_TYPE))
        counts[key] = counts.get(key, 0) + int(point["asInt"])
    return counts



@pytest.fixture(scope="module")
def offline_run(tmp_path_factory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("metrics-offline")
    inputs, _ = _inputs(folder, 3)
    outputs = _classify(inputs, folder / "logs")
    return {"outputs": outputs, "logs": folder / "logs", "n": len(inputs)}


def test_with_no_endpoint_the_local_file_holds_the_series(offline_run) -> None:
    documents = _otlp_json_lines(offline_run["logs"], "metrics")
    assert documents, "no metrics-YYYY-MM-DD.jsonl"
    n = offline_run["n"]
    stages = _stage_counts(_metric_points(documents, metrics.STAGE_DURATION))
    assert stages[LOAD] == n and stages[FORWARD] == n - 1
    assert _image_counts(_metric_points(documents, metrics.IMAGES)) == {
        ("success", None): n - 1, ("failure", "PIL.UnidentifiedImageError"): 1
    }
    assert _metric_points(documents, metrics.PROCESS_MEMORY_USAGE)
    [resource] = {json.dumps(r["resource"], sort_keys=True) for d in documents for r in d["resourceMetrics"]}
    assert {"key": "service.name", "value": {"stringValue": "wwts"}} in json.loads(resource)["attributes"]


def test_local_exemplars_point_at_spans_of_the_same_run(offline_run) -> None:
    spans = {
        span["spanId"]: (span["traceId"], span["name"])
        for document in _otlp_json_lines(offline_run["logs"], "traces")
        for resource in document["resourceSpans"] for scope in resource["scopeSpans"] for span in scope["spans"]
    }
    run_traces = {output["trace_id"] for output in offline_run["outputs"]}
    checked = 0
    for point in _metric_points(_otlp_json_lines(offline_run["logs"], "metrics"), metrics.STAGE_DURATION):
        stage = _attributes(point)[metrics.STAGE]
        for exemplar in point.get("exemplars", []):
            assert exemplar["traceId"] in run_traces
            assert spans[exemplar["spanId"]] in ((exemplar["traceId"], stage), (exemplar["traceId"], CLASSIFY_SPAN))
            checked += 1
    assert checked >= len(STAGES)


def _poll(what: str, probe, timeout: float = 45.0) -> Any:
    """probe() -> a value, or None to ask again; the deadline only bounds a broken backend."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not there after {timeout:.0f} s")
        time.sleep(0.5)


def _es_metric_docs(es, run: str) -> list[dict[str, Any]]:
    es.indices.refresh(index="wwts-metrics*", ignore_unavailable=True, allow_no_indices=True)
    response = es.search(index="wwts-metrics*", size=500, ignore_unavailable=True, allow_no_indices=True,
                         query={"term": {"resource.attributes.wwts.test.run": run}})
    return [hit["_source"] for hit in response["hits"]["hits"]]


@pytest.fixture(scope="module")
def elk_setup(es_url: str) -> None:
    """`wwts elk setup`, as a user runs it: the metrics data stream's template first."""
    done = run_wwts("elk", "setup", env={"WWTS_ES_URL": es_url})
    assert done.returncode == 0, done.stderr
    assert "index template wwts-metrics" in done.stdout


@pytest.mark.integration
def test_series_arrive_over_otlp_in_elasticsearch(tmp_path: Path, es, otlp_endpoint: str, elk_setup) -> None:
    inputs, _ = _inputs(tmp_path, 3)
    n, run = len(inputs), uuid.uuid4().hex
    _classify(inputs, tmp_path / "logs", env={
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_endpoint, "OTEL_RESOURCE_ATTRIBUTES": f"wwts.test.run={run}",
    })
    assert not glob.glob(str(tmp_path / "logs" / "metrics-*.jsonl"))  # an endpoint: nothing local

    def complete() -> list[dict[str, Any]] | None:
        docs = _es_metric_docs(es, run)
        images = sum(d["metrics"].get(metrics.IMAGES, 0) for d in docs)
        return docs if images >= n else None

    docs = _poll("wwts.images in wwts-metrics*", complete)
    stages: dict[str, int] = {}
    for doc in docs:
        if metrics.STAGE_DURATION in doc["metrics"]:
            stage = doc["attributes"][metrics.STAGE]
            stages[stage] = stages.get(stage, 0) + sum(doc["metrics"][metrics.STAGE_DURATION]["counts"])
            assert doc["attributes"][metrics.MODEL] == "efficientnet-lite0" and doc["unit"] == "s"
    assert stages[LOAD] == n and stages[FORWARD] == n - 1
    images: dict[tuple[str, str | None], int] = {}
    for doc in docs:
        if metrics.IMAGES in doc["metrics"]:
            key = (doc["attributes"][metrics.OUTCOME], doc["attributes"].get(metrics.ERROR_TYPE))
            images[key] = images.get(key, 0) + doc["metrics"][metrics.IMAGES]
    assert images == {("success", None): n - 1, ("failure", "PIL.UnidentifiedImageError"): 1}
    assert any(metrics.PROCESS_CPU_UTILIZATION in doc["metrics"] for doc in docs)
    assert {doc["resource"]["attributes"]["service.name"] for doc in docs} == {"wwts"}
    # the template's types, not dynamic guesses
    mapping = next(iter(es.indices.get_mapping(index="wwts-metrics").body.values()))["mappings"]["properties"]
    assert mapping["@timestamp"]["type"] == "date"
    assert mapping["attributes"]["properties"]["wwts"]["properties"]["stage"]["type"] == "keyword"


def _spans_in_es(es, trace_id: str) -> list[dict[str, Any]]:
    es.indices.refresh(index="wwts-traces*", ignore_unavailable=True, allow_no_indices=True)
    response = es.search(index="wwts-traces*", query={"term": {"TraceId": trace_id}}, size=50,
                         ignore_unavailable=True, allow_no_indices=True)
    return [hit["_source"] for hit in response["hits"]["hits"]]


@pytest.mark.integration
def test_an_exemplar_opens_its_trace_in_trace_show(tmp_path: Path, es, es_url: str, otlp_endpoint: str) -> None:
    """Spans through the collector, metrics to the local file (no metrics endpoint): the
    collector's Elasticsearch exporter keeps no exemplars, the file does."""
    inputs, _ = _inputs(tmp_path, 2)
    logs = tmp_path / "logs"
    _classify(inputs, logs, env={"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": otlp_endpoint, "WWTS_ES_URL": es_url})
    loads = [p for p in _metric_points(_otlp_json_lines(logs, "metrics"), metrics.STAGE_DURATION)
             if _attributes(p)[metrics.STAGE] == LOAD]
    [exemplar, *_] = [e for p in loads for e in p.get("exemplars", [])]
    trace_id = exemplar["traceId"]

    def arrived() -> list[dict[str, Any]] | None:
        spans = _spans_in_es(es, trace_id)
        return spans if {CLASSIFY_SPAN, LOAD} <= {s["Name"] for s in spans} else None

    spans = _poll(f"the spans of {trace_id}", arrived)
    assert exemplar["spanId"] in {s["SpanId"] for s in spans if s["Name"] == LOAD}
    shown = run_wwts("trace", "show", trace_id, env={"WWTS_ES_URL": es_url})
    assert shown.returncode == 0, shown.stderr
    assert CLASSIFY_SPAN in shown.stdout and LOAD in shown.stdout


def test_the_cpu_figure_is_a_share_of_all_cpus_even_sampled_back_to_back() -> None:
    """Right after the sampler starts, and between two samples microseconds apart, one
    10 ms clock tick of CPU time must not read as many CPUs' worth."""
    sampler = ResourceSampler(nvml=FakeNvml())  # type: ignore[arg-type]
    figures = [sampler.latest.process_cpu_utilization] + [sampler.sample().process_cpu_utilization for _ in range(50)]
    assert all(0.0 <= figure <= 1.0 for figure in figures)
    start = time.process_time()
    while time.process_time() - start < 0.3:  # 0.3 s of CPU, however long that takes here
        pass
    time.sleep(0.15)  # past the shortest interval a figure spans
    assert 0.0 < sampler.sample().process_cpu_utilization <= 1.0
