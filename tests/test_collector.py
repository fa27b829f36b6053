"""Spans through the real OpenTelemetry Collector into the real Elasticsearch, read back
with `wwts trace show|slow`; alerts; a collector that is down; and a run made offline
whose local trace file `wwts trace ship` sends later, exactly once."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.conftest import free_port, run_wwts, run_wwts_tail, unique_photos

pytestmark = pytest.mark.integration
STAGES = ["load", "preprocess", "forward", "postprocess"]


def wait_for_spans(es, trace_id: str, count: int, timeout: float = 30.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    spans: list[dict] = []
    while time.monotonic() < deadline:
        es.indices.refresh(index="wwts-traces*", ignore_unavailable=True, allow_no_indices=True)
        response = es.search(index="wwts-traces*", query={"term": {"TraceId": trace_id}}, size=50,
                             ignore_unavailable=True, allow_no_indices=True)
        spans = [hit["_source"] for hit in response["hits"]["hits"]]
        if len(spans) >= count:
            return spans
        time.sleep(0.5)
    return spans


@pytest.fixture(scope="module")
def exported(tmp_path_factory, es, es_url: str, otlp_endpoint: str):
    folder = tmp_path_factory.mktemp("otlp")
    photo = unique_photos(folder / "photos", 1)[0]
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_endpoint,
        "WWTS_ES_URL": es_url,
        "WWTS_LATENCY_ALERT_MS": "0",
    }
    result = run_wwts("classify", str(photo), "--json", "--log-dir", str(folder / "logs"), env=env)
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    # records the run could not ship within its bounded final pass wait on disk: catch up
    shipped = run_wwts("logs", "ship", env={**env, "WWTS_LOG_DIR": str(folder / "logs")})
    assert shipped.returncode == 0, shipped.stderr
    spans = wait_for_spans(es, output["trace_id"], 5)
    return {"output": output, "spans": spans, "env": env, "photo": photo}


def test_the_five_spans_arrive_with_links_and_attributes(exported) -> None:
    spans, output = exported["spans"], exported["output"]
    assert sorted(s["Name"] for s in spans) == sorted(["wwts.classify", *STAGES])
    root = next(s for s in spans if s["Name"] == "wwts.classify")
    assert "ParentSpanId" not in root or not root["ParentSpanId"]
    assert all(s["ParentSpanId"] == root["SpanId"] for s in spans if s is not root)
    assert root["Attributes.wwts.image.md5"] == output["md5"]
    assert root["Attributes.wwts.input"] == root["Attributes.file.path"] == str(exported["photo"])
    assert root["Attributes.wwts.image.width"] == output["width"]
    assert root["Attributes.wwts.runtime"] == output["runtime"] == "onnxruntime"
    assert root["Attributes.wwts.top1.label"] == output["labels"][0]["label"]
    assert root["Resource.service.name"] == "wwts"
    forward = next(s for s in spans if s["Name"] == "forward")
    assert forward["Attributes.wwts.resource.process.memory.rss"] > 0
    assert root["Duration"] >= forward["Duration"] > 0


def test_threshold_zero_makes_an_alert_record_and_a_span_event(exported, es) -> None:
    root = next(s for s in exported["spans"] if s["Name"] == "wwts.classify")
    assert root["Events.wwts.alert.wwts.alert.metric"] == "latency_ms"
    assert root["Events.wwts.alert.wwts.alert.threshold"] == 0
    es.indices.refresh(index="wwts-logs-*")
    alerts = es.search(index="wwts-logs-*", query={"bool": {"filter": [
        {"term": {"trace.id": exported["output"]["trace_id"]}}, {"term": {"event.dataset": "wwts.alert"}}]}})
    [alert] = [hit["_source"] for hit in alerts["hits"]["hits"]]
    assert alert["wwts"]["alert"]["value"] > 0 and alert["log.level"] == "warning"


def test_trace_show_prints_all_five(exported) -> None:
    trace_id = exported["output"]["trace_id"]
    result = run_wwts("trace", "show", trace_id, env=exported["env"])
    assert result.returncode == 0, result.stderr
    for name in ["wwts.classify", *STAGES]:
        assert name in result.stdout
    assert exported["output"]["md5"] in result.stdout
    assert "slowest stage" in result.stdout and "log records of this trace" in result.stdout
    missing = run_wwts("trace", "show", "0" * 32, env=exported["env"])
    assert missing.returncode == 1 and "no spans" in missing.stderr


def test_trace_slow_lists_the_trace(exported) -> None:
    result = run_wwts("trace", "slow", "--min-ms", "0", "--since", "10m", "--limit", "500", env=exported["env"])
    assert result.returncode == 0, result.stderr
    assert exported["output"]["trace_id"] in result.stdout
    none = run_wwts("trace", "slow", "--min-ms", "100000000", env=exported["env"])
    assert none.returncode == 0 and exported["output"]["trace_id"] not in none.stdout


def test_a_dead_collector_costs_a_bounded_wait_and_changes_no_result(tmp_path: Path, data_dir: Path) -> None:
    images = [str(data_dir / "coffee.png"), str(data_dir / "rocket.jpg")]
    baseline = run_wwts("classify", *images, "--json", "--log-dir", str(tmp_path / "a"))
    down, tail = run_wwts_tail("classify", *images, "--json", "--log-dir", str(tmp_path / "b"),
                               env={"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}"})
    print(f"collector down: the run ended {tail:.2f} s after its last result")
    assert down.returncode == 0, down.stderr
    labels = lambda r: [json.loads(line)["labels"] for line in r.stdout.splitlines()]  # noqa: E731
    assert labels(down) == labels(baseline)
    warnings = [line for line in down.stderr.splitlines() if line.strip()]
    assert len(warnings) == 1 and "traces were not all exported" in warnings[0]
    assert tail < 2.5  # the ~2 s shutdown budget, plus interpreter exit


def test_a_run_made_offline_is_shipped_later_exactly_once(tmp_path: Path, es, es_url: str, otlp_endpoint: str) -> None:
    """No endpoint at run time: the spans go to the local OTLP-JSON file. `wwts trace
    ship` posts them to the collector (OTLP/HTTP, JSON), then `trace show` opens the run;
    a second ship sends nothing; with the collector down nothing is lost and one line says so."""
    photo = unique_photos(tmp_path / "photos", 1)[0]
    logs = tmp_path / "logs"
    offline = run_wwts("classify", str(photo), "--json", "--log-dir", str(logs))
    assert offline.returncode == 0, offline.stderr
    trace_id = json.loads(offline.stdout)["trace_id"]
    http = otlp_endpoint.rsplit(":", 1)[0] + ":" + str(int(otlp_endpoint.rsplit(":", 1)[1]) + 1)  # 4317 -> 4318
    ship_env = {"WWTS_LOG_DIR": str(logs), "OTEL_EXPORTER_OTLP_ENDPOINT": http, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}

    down = run_wwts("trace", "ship", env={**ship_env, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}"})
    assert down.returncode == 1 and len(down.stderr.strip().splitlines()) == 1, down.stderr
    assert "stays on disk" in down.stderr

    first = run_wwts("trace", "ship", env=ship_env)
    assert first.returncode == 0, first.stderr
    assert "shipped 5 span(s) in" in first.stdout, first.stdout
    spans = wait_for_spans(es, trace_id, 5)
    assert sorted(s["Name"] for s in spans) == sorted(["wwts.classify", *STAGES])

    again = run_wwts("trace", "ship", env=ship_env)
    assert again.returncode == 0 and "shipped 0 span(s)" in again.stdout, again.stdout
    time.sleep(2)  # what a second send would have written would be searchable by now
    assert len(wait_for_spans(es, trace_id, 6, timeout=3)) == 5

    second = run_wwts("classify", str(photo), "--json", "--log-dir", str(logs))  # offline again; shipped over gRPC
    grpc_env = {**ship_env, "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    grpc = run_wwts("trace", "ship", env=grpc_env)
    assert grpc.returncode == 0 and "shipped 5 span(s)" in grpc.stdout, grpc.stdout + grpc.stderr  # only the new run
    assert len(wait_for_spans(es, json.loads(second.stdout)["trace_id"], 5)) == 5

    shown = run_wwts("trace", "show", trace_id, env={"WWTS_ES_URL": es_url})
    assert shown.returncode == 0, shown.stderr
    assert all(name in shown.stdout for name in ["wwts.classify", *STAGES])
