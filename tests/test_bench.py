"""The bench's pure helpers (benchmarks measure; tests do not time anything)."""

from __future__ import annotations

import math

import pytest

from wwts.bench import cycle, import_seconds, overhead_pct, parse_importtime, percentile, stage_summary


def test_percentile_interpolates_between_ranks() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile(values, 50) == pytest.approx(2.5)
    assert percentile(list(range(1, 101)), 95) == pytest.approx(95.05)
    assert percentile([7.0], 95) == 7.0
    assert math.isnan(percentile([], 50))


def test_stage_summary_orders_the_contract_stages_first() -> None:
    latencies = [
        {"load": 1.0, "preprocess": 2.0, "forward": 10.0, "postprocess": 0.1, "total": 13.1},
        {"load": 3.0, "preprocess": 2.0, "forward": 30.0, "postprocess": 0.1, "total": 35.1},
    ]
    summary = stage_summary(latencies)
    assert list(summary) == ["load", "preprocess", "forward", "postprocess", "total"]
    assert summary["load"] == {"p50": 2.0, "p95": 2.9}
    assert summary["forward"]["p50"] == 20.0


def test_overhead_is_relative_to_the_time_without_telemetry() -> None:
    assert overhead_pct(10.3, 10.0) == pytest.approx(3.0)
    assert overhead_pct(9.9, 10.0) == pytest.approx(-1.0)
    assert math.isnan(overhead_pct(1.0, 0.0))


def test_cycle_repeats_the_inputs_to_the_count() -> None:
    assert cycle(["a", "b"], 5) == ["a", "b", "a", "b", "a"]
    assert cycle([], 3) == []


def test_parse_importtime_names_third_party_packages_wherever_imported() -> None:
    text = "\n".join(
        [
            "import time: self [us] | cumulative | imported package",
            "import time:       100 |        100 |     torch._C",
            "import time:      2000 |    1500000 |   torch",
            "import time:      3000 |    1600000 | wwts.classify",
            "import time:        50 |      40000 | typer",
            "import time:        10 |       3000 |   typer.core",
            "import time:        20 |      20000 |   opentelemetry",
        ]
    )
    assert parse_importtime(text) == [("torch", 1500.0), ("typer", 40.0), ("opentelemetry", 20.0)]
    assert parse_importtime(text, top=1) == [("torch", 1500.0)]
    assert import_seconds(text) == pytest.approx(1.64)


# -- the runner options the bench compares ------------------------------------------------
