"""Tail-based sampling in the real collector: every trace with an error and every trace
longer than the slow threshold reaches Elasticsearch, no other one does (sampled share 0 %),
and every image's ECS record is there regardless (records go to Elasticsearch directly).

Deterministic by construction, not by machine speed: the images run first with no
collector, so their spans land in the local trace file with fixed durations. The test reads
each trace's duration the way the latency policy computes it (first span start to last
span end, whole milliseconds), puts the threshold in the widest gap between those
durations, starts a second collector with it, and ships the recorded spans to it
(`wwts trace ship`). Which traces must be kept is then known before the collector decides.
A large PNG makes a clearly slower trace likely, but nothing depends on it. A last failed
trace, shipped after the others, marks the end: once it is in Elasticsearch, the traces
shipped before it have been decided, so the dropped ones are gone for good.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.conftest import run_wwts, unique_photos

pytestmark = pytest.mark.integration


def _big_png(path: Path, width: int = 4000, height: int = 3000) -> Path:
    """A PNG that takes a while to decode and resize (a tiled pattern: small on disk)."""
    tile = np.random.default_rng(7).integers(0, 256, size=(50, 50, 3), dtype=np.uint8)
    Image.fromarray(np.tile(tile, (height // 50, width // 50, 1))).save(path)
    return path


def _local_traces(logs: Path) -> dict[str, dict[str, Any]]:
    """trace id -> span count and duration in whole ms (as the latency policy measures it)."""
    starts: dict[str, list[int]] = {}
    ends: dict[str, list[int]] = {}
    for file in sorted(logs.glob("traces-*.jsonl")):
        for line in file.read_text().splitlines():
            for resource in json.loads(line)["resourceSpans"]:
                for scope in resource["scopeSpans"]:
                    for span in scope["spans"]:
                        starts.setdefault(span["traceId"], []).append(int(span["startTimeUnixNano"]))
                        ends.setdefault(span["traceId"], []).append(int(span["endTimeUnixNano"]))
    return {
        trace: {"spans": len(starts[trace]), "ms": (max(ends[trace]) - min(starts[trace])) // 1_000_000}
        for trace in starts
    }


def widest_gap_threshold(durations: list[int]) -> int:
    """The threshold T (the policy keeps ms > T) in the widest gap between the durations."""
    ordered = sorted(set(durations))
    assert len(ordered) >= 2, f"need two different durations to split, got {durations}"
    low, _high = max(zip(ordered, ordered[1:]), key=lambda pair: pair[1] - pair[0])
    return low


def test_widest_gap_threshold() -> None:
    assert widest_gap_threshold([12, 15, 14, 480, 30]) == 30
    assert widest_gap_threshold([5, 900]) == 5


def _span_count(es, trace_id: str) -> int:
    es.indices.refresh(index="wwts-traces*", ignore_unavailable=True, allow_no_indices=True)
    return es.count(index="wwts-traces*", query={"term": {"TraceId": trace_id}},
                    ignore_unavailable=True, allow_no_indices=True)["count"]


def _wait(what: str, done, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not there after {timeout:.0f} s")
        time.sleep(0.5)


def test_errors_and_slow_traces_are_kept_the_rest_dropped(tmp_path: Path, es, es_url: str, collector_factory) -> None:
    fast = [str(p) for p in unique_photos(tmp_path / "photos", 3)]
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image\n")
    slow = _big_png(tmp_path / "large.png")
    logs = tmp_path / "logs"
    env = {"WWTS_ES_URL": es_url}
    run = run_wwts("classify", *fast, str(bad), str(slow), "--json", "--log-dir", str(logs), env=env)
    assert run.returncode == 1, run.stderr  # bad.jpg fails, the others are classified
    outputs = [json.loads(line) for line in run.stdout.splitlines()]
    shipped = run_wwts("logs", "ship", env={**env, "WWTS_LOG_DIR": str(logs)})
    assert shipped.returncode == 0, shipped.stderr

    traces = _local_traces(logs)
    assert set(traces) == {o["trace_id"] for o in outputs}
    failed = {o["trace_id"] for o in outputs if not o["ok"]}
    assert len(failed) == 1
    durations = {t: info["ms"] for t, info in traces.items() if t not in failed}
    threshold = widest_gap_threshold(list(durations.values()))
    slow_traces = {t for t, ms in durations.items() if ms > threshold}
    fast_traces = set(durations) - slow_traces
    print(f"trace durations (ms): {sorted(durations.values())}; threshold {threshold} ms; failed: "
          f"{[traces[t]['ms'] for t in failed]} ms")
    assert slow_traces and fast_traces

    # a later trace sure to be kept (a failure), shipped after the others: once it is in
    # Elasticsearch, every trace shipped before it has been decided
    sentinel_logs = tmp_path / "sentinel-logs"
    sentinel = run_wwts("classify", str(bad), "--json", "--log-dir", str(sentinel_logs))
    sentinel_trace = json.loads(sentinel.stdout)["trace_id"]
    sentinel_spans = _local_traces(sentinel_logs)[sentinel_trace]["spans"]

    collector = collector_factory("sampling", env={
        "WWTS_SAMPLING_SLOW_MS": str(threshold),
        "WWTS_SAMPLING_PERCENTAGE": "0",
        "WWTS_SAMPLING_DECISION_WAIT": "2s",
    })
    ship_env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.otlp_http_endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}
    sent = run_wwts("trace", "ship", env={**ship_env, "WWTS_LOG_DIR": str(logs)})
    assert sent.returncode == 0, sent.stderr
    assert f"shipped {sum(t['spans'] for t in traces.values())} span(s)" in sent.stdout, sent.stdout
    last = run_wwts("trace", "ship", env={**ship_env, "WWTS_LOG_DIR": str(sentinel_logs)})
    assert last.returncode == 0, last.stderr

    kept = failed | slow_traces
    _wait("every failed and slow trace, whole, in wwts-traces",
          lambda: all(_span_count(es, t) == traces[t]["spans"] for t in kept)
          and _span_count(es, sentinel_trace) == sentinel_spans)
    assert {t: _span_count(es, t) for t in fast_traces} == dict.fromkeys(fast_traces, 0)

    es.indices.refresh(index="wwts-logs-*")
    records = es.search(index="wwts-logs-*", size=50, query={"bool": {"filter": [
        {"terms": {"trace.id": sorted(traces)}}, {"term": {"event.dataset": "wwts.inference"}}]}})
    assert sorted(hit["_source"]["trace"]["id"] for hit in records["hits"]["hits"]) == sorted(traces)
