"""Span shape, with the SDK's in-memory exporter: names, tree, attributes, links, errors."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from pipeline.defaults import STAGES
from pipeline.driver import Pipeline
from telemetry.hooks import TelemetryHooks
from telemetry.resources import RSS, SYSTEM_MEMORY_USED, CPU_UTILIZATION, ResourceSampler
from telemetry.thresholds import Thresholds


@pytest.fixture
def traced(make_pipeline):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    logger = logging.getLogger("wwts.test-spans")
    logger.propagate = False

    def make(batch_size: int = 1, thresholds: Thresholds = Thresholds(), **config: object) -> Pipeline:
        hooks = TelemetryHooks(provider.get_tracer("test"), logger, sampler=ResourceSampler(), thresholds=thresholds)
        return make_pipeline(hooks, batch_size=batch_size, **config)

    return make, exporter


def by_trace(spans):
    traces: dict[int, list] = {}
    for span in spans:
        traces.setdefault(span.context.trace_id, []).append(span)
    return traces


def test_one_image_makes_a_classify_span_with_four_stage_children(traced, data_dir: Path) -> None:
    make, exporter = traced
    [result] = list(make().run([str(data_dir / "coffee.png")]))
    spans = exporter.get_finished_spans()
    root = next(s for s in spans if s.name == "wwts.classify")
    children = [s for s in spans if s.parent is not None and s.parent.span_id == root.context.span_id]
    assert sorted(s.name for s in children) == sorted(STAGES)
    assert len(spans) == 5 and root.parent is None
    assert result.trace_id == format(root.context.trace_id, "032x")
    attributes = root.attributes
    assert attributes["wwts.input"].endswith("coffee.png") and attributes["file.name"] == "coffee.png"
    assert attributes["file.path"] == str(data_dir / "coffee.png")
    assert attributes["wwts.image.md5"] == result.image.md5
    assert (attributes["wwts.image.width"], attributes["wwts.image.height"]) == (600, 400)
    assert (attributes["wwts.image.mode"], attributes["wwts.image.format"], attributes["file.size"]) == ("RGB", "PNG", 466706)
    assert attributes["wwts.model.name"] == "efficientnet-lite0" and attributes["wwts.device"] == "cpu"
    assert attributes["wwts.runtime"] == result.runtime == "onnxruntime"
    assert attributes["wwts.top1.label"] == "浓缩咖啡" and attributes["wwts.top1.class_id"] == 967
    assert attributes["wwts.top1.score"] == pytest.approx(0.96, abs=0.02)
    for child in children:
        assert child.attributes[RSS] > 0 and child.attributes[SYSTEM_MEMORY_USED] > 0
        assert 0.0 <= child.attributes[CPU_UTILIZATION] <= 1.0  # of all CPUs, not of one
        assert not any(k.startswith("process.") or k.startswith("system.") for k in child.attributes)


def test_each_image_gets_its_own_trace(traced, data_dir: Path) -> None:
    make, exporter = traced
    results = list(make().run([str(data_dir / "coffee.png"), str(data_dir / "camera.png")]))
    assert len({r.trace_id for r in results}) == 2
    assert len(by_trace(exporter.get_finished_spans())) == 2


def test_batched_forward_runs_once_and_links_every_image(traced, data_dir: Path) -> None:
    make, exporter = traced
    paths = [str(data_dir / n) for n in ("coffee.png", "camera.png", "rocket.jpg")]
    results = list(make(batch_size=3).run(paths))
    spans = exporter.get_finished_spans()
    forwards = [s for s in spans if s.name == "forward"]
    assert len(forwards) == 1
    roots = {s.context.span_id for s in spans if s.name == "wwts.classify"}
    assert {link.context.span_id for link in forwards[0].links} == roots
    assert forwards[0].attributes["wwts.batch.size"] == 3
    assert [r.predictions[0].class_id for r in results] == [967, 872, 657]


def test_a_failed_stage_records_the_exception_and_marks_both_spans(traced, tmp_path: Path) -> None:
    make, exporter = traced
    broken = tmp_path / "broken.jpg"
    broken.write_text("not an image")
    [result] = list(make().run([str(broken)]))
    assert not result.ok
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert spans["load"].status.status_code is StatusCode.ERROR
    assert spans["load"].events[0].name == "exception"
    root = spans["wwts.classify"]
    assert root.status.status_code is StatusCode.ERROR
    assert root.status.description == str(result.error)  # the message, not a prefix
    assert root.attributes["error.type"] == spans["load"].attributes["error.type"] == "PIL.UnidentifiedImageError"
    assert spans["load"].events[0].attributes["exception.type"] == "PIL.UnidentifiedImageError"
    assert "preprocess" not in spans and "forward" not in spans


def test_latency_alert_adds_a_span_event(traced, data_dir: Path) -> None:
    make, exporter = traced
    list(make(thresholds=Thresholds(latency_ms=0.0)).run([str(data_dir / "camera.png")]))
    root = next(s for s in exporter.get_finished_spans() if s.name == "wwts.classify")
    event = next(e for e in root.events if e.name == "wwts.alert")
    assert event.attributes["wwts.alert.metric"] == "latency_ms"
    assert event.attributes["wwts.alert.threshold"] == 0.0


def test_images_loaded_but_never_classified_end_as_cancelled(traced, data_dir: Path) -> None:
    """A stopped run (SIGINT/SIGTERM) leaves images that were decoded ahead: their spans
    still end, marked, instead of vanishing from the trace store."""
    make, exporter = traced
    pipeline = make(ahead=4)
    stop = []
    results = pipeline.run([str(data_dir / "coffee.png")] * 6, stopped=lambda: bool(stop))
    first = next(results)
    stop.append(True)  # what a signal does
    assert list(results) == []  # nothing more is taken
    roots = [s for s in exporter.get_finished_spans() if s.name == "wwts.classify"]
    begun = len(roots)  # how many the decode worker had started: 1 to 5 (the ahead window)
    assert 1 <= begun <= 5
    cancelled = [s for s in roots if s.attributes.get("wwts.cancelled")]
    assert len(cancelled) == begun - 1 and all(e.name == "wwts.cancelled" for s in cancelled for e in s.events)
    done = next(s for s in roots if not s.attributes.get("wwts.cancelled"))
    assert format(done.context.trace_id, "032x") == first.trace_id and first.ok
