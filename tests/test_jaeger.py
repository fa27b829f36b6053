"""Jaeger for real: a collector with the config.jaeger.yaml overlay (what docker-compose
runs) exports a `wwts classify` trace over OTLP to the Jaeger v2 the fixtures start, and
Jaeger's query API returns its five spans. The default local collector has no Jaeger
pipeline, so it keeps working where no Jaeger runs."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from deploy.servers import COLLECTOR_DIR
from telemetry.names import CLASSIFY_SPAN
from tests.conftest import run_wwts, unique_photos

pytestmark = pytest.mark.integration
STAGES = ["load", "preprocess", "forward", "postprocess"]


def _jaeger_trace(query_url: str, trace_id: str) -> list[dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"{query_url}/api/traces/{trace_id}", timeout=5) as response:
            body = json.loads(response.read())
    except OSError:  # 404 until the trace is stored, or a refused connection
        return []
    return [span for trace in body.get("data") or [] for span in trace.get("spans", [])] if body else []


def test_the_collector_exports_a_trace_to_jaeger(tmp_path: Path, jaeger, collector_factory) -> None:
    collector = collector_factory(
        "jaeger", env={"WWTS_JAEGER_OTLP_ENDPOINT": jaeger.collector_endpoint},
        configs=[COLLECTOR_DIR / "config.jaeger.yaml"],
    )
    photo = unique_photos(tmp_path / "photos", 1)[0]
    run = run_wwts("classify", str(photo), "--json", "--log-dir", str(tmp_path / "logs"),
                   env={"OTEL_EXPORTER_OTLP_ENDPOINT": collector.otlp_endpoint})
    assert run.returncode == 0, run.stderr
    output = json.loads(run.stdout)

    deadline = time.monotonic() + 60
    spans = _jaeger_trace(jaeger.query_url, output["trace_id"])
    while len(spans) < 5 and time.monotonic() < deadline:
        time.sleep(0.5)
        spans = _jaeger_trace(jaeger.query_url, output["trace_id"])
    assert sorted(s["operationName"] for s in spans) == sorted([CLASSIFY_SPAN, *STAGES])
    assert {s["traceID"] for s in spans} == {output["trace_id"]}
    root = next(s for s in spans if s["operationName"] == CLASSIFY_SPAN)
    tags = {tag["key"]: tag["value"] for tag in root["tags"]}
    assert tags["wwts.image.md5"] == output["md5"]
    assert tags["wwts.top1.label"] == output["labels"][0]["label"]
    children = [s for s in spans if s is not root]
    assert all(ref["spanID"] == root["spanID"] for s in children for ref in s["references"] if ref["refType"] == "CHILD_OF")
