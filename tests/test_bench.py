"""The bench's pure helpers and its wiring (benchmarks measure; tests time nothing)."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import floor
from pipeline import stages
from pipeline.defaults import DEFAULT_MAX_PIXELS
from pipeline.models import DEFAULT_MODEL, preprocessing
from telemetry.names import INFERENCE
from wwts import bench
from wwts.bench import (
    TARGETS,
    WwtsOptions,
    abba,
    cycle,
    figures,
    import_seconds,
    overhead_pct,
    parse_importtime,
    parse_summary,
    percentile,
    ratio_median,
    record_latencies,
    rotated,
    soak_growth,
    stage_summary,
    verdicts,
)


def test_percentile_interpolates_between_ranks() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile(values, 50) == pytest.approx(2.5)
    assert percentile(list(range(1, 101)), 95) == pytest.approx(95.05)
    assert percentile([7.0], 95) == 7.0
    assert math.isnan(percentile([], 50))


def test_stage_summary_orders_the_pipeline_stages_first() -> None:
    latencies = [
        {"total": 13.1, "queue": 0.5, "load": 1.0, "preprocess": 2.0, "forward": 10.0, "postprocess": 0.1},
        {"total": 35.1, "queue": 0.5, "load": 3.0, "preprocess": 2.0, "forward": 30.0, "postprocess": 0.1},
    ]
    summary = stage_summary(latencies)
    assert list(summary) == ["load", "preprocess", "forward", "postprocess", "total", "queue"]
    assert summary["load"] == {"p50": 2.0, "p95": 2.9}
    assert summary["forward"]["p50"] == 20.0


def test_overhead_is_relative_to_the_time_without_telemetry() -> None:
    assert overhead_pct(10.3, 10.0) == pytest.approx(3.0)
    assert overhead_pct(9.9, 10.0) == pytest.approx(-1.0)
    assert math.isnan(overhead_pct(1.0, 0.0))


def test_a_ratio_is_the_median_of_the_repeats_own_ratios() -> None:
    # repeat 2 ran under load: both programs slowed, its ratio is still 2
    seed, wwts = [20.0, 40.0, 22.0], [10.0, 20.0, 10.0]
    assert ratio_median(seed, wwts) == pytest.approx(2.0)
    assert math.isnan(ratio_median([3.0], [0.0]))  # no usable pair
    with pytest.raises(ValueError):
        ratio_median([1.0, 2.0], [1.0])


def test_every_variant_takes_every_place_in_the_order() -> None:
    items = ["seed", "wwts", "floor"]
    orders = [rotated(items, r) for r in range(3)]
    assert orders == [["seed", "wwts", "floor"], ["wwts", "floor", "seed"], ["floor", "seed", "wwts"]]
    assert {order[0] for order in orders} == set(items)
    assert rotated(items, 4) == orders[1]
    assert rotated([], 2) == []


def test_telemetry_runs_alternate_on_off_off_on() -> None:
    assert abba(0) == (True, False, False, True)
    assert abba(1) == (False, True, True, False)
    assert abba(0).count(True) == abba(0).count(False)


def test_cycle_repeats_the_inputs_to_the_count() -> None:
    assert cycle(["a", "b"], 5) == ["a", "b", "a", "b", "a"]
    assert cycle([], 3) == []


def test_parse_summary_reads_the_last_summary_line_of_its_program() -> None:
    text = (
        "2026 [INFO] Top-1: 'x'\nseed_loop images=3 seconds=1.0\nnoise\n"
        "seed_loop images=300 seconds=28.125 images_per_s=10.7\n"
    )
    assert parse_summary(text, "seed_loop") == {"images": 300.0, "seconds": 28.125, "images_per_s": 10.7}
    assert parse_summary("floor images=12 seconds=1.5e0", "floor") == {"images": 12.0, "seconds": 1.5}
    assert parse_summary(text, "floor") == {}
    assert parse_summary("seed_loop_x images=1", "seed_loop") == {}


def test_record_latencies_come_from_inference_records_only() -> None:
    lines = [
        json.dumps({"event": {"dataset": INFERENCE}, "wwts": {"latency_ms": {"load": 1.5, "total": 9.0}}}),
        json.dumps({"event": {"dataset": "wwts.startup"}, "message": "Python 3.11"}),
        json.dumps({"event": {"dataset": INFERENCE}, "error": {"type": "OSError"}}),  # failed: no latencies
        "not json",
    ]
    assert record_latencies(lines) == [{"load": 1.5, "total": 9.0}]


def test_soak_growth_compares_windows_of_readings_after_the_warm_up() -> None:
    samples = [(0, 50.0), (150, 120.0)]  # start-up and the queue filling: before the warm-up
    samples += [(done, 140.0 + done / 1000) for done in range(300, 5000, 50)]  # +1 MB per 1,000 images
    samples += [(4990, 190.0)]  # one transient near the end: a window's median ignores it
    samples += [(5000, 230.0)]  # after the last result: the shutdown, left out
    growth = soak_growth(samples, 5000, 300)
    assert growth["rss_after_warmup_mb"] == pytest.approx(140.5, abs=0.1)
    assert growth["rss_end_mb"] == pytest.approx(144.75, abs=0.1)
    assert growth["growth_mb"] == pytest.approx(4.2, abs=0.1)
    assert growth["rss_max_mb"] == 190.0
    assert math.isnan(soak_growth([], 5000, 300)["growth_mb"])
    short = soak_growth([(done, 100.0) for done in range(0, 40, 2)], 40, 300)  # shorter than the warm-up
    assert short["growth_mb"] == 0.0
    sparse = soak_growth([(3, 100.0), (17, 102.0)], 20, 300)  # no reading inside the windows: the nearest
    assert sparse == {"rss_after_warmup_mb": 100.0, "rss_end_mb": 102.0, "rss_max_mb": 102.0, "growth_mb": 2.0}


def test_targets_are_met_in_their_direction() -> None:
    at_least, at_most = TARGETS["vs_seed"], TARGETS["telemetry_pct"]
    assert at_least.met(4.5) and not at_least.met(4.49)
    assert at_most.met(3.0) and at_most.met(-1.0) and not at_most.met(3.01)
    assert not at_least.met(None) and not at_most.met(float("nan"))
    assert at_least.text() == "≥ 4.5×" and at_most.text() == "≤ 3 %"


def test_verdicts_name_every_target_and_leave_unmeasured_ones_open() -> None:
    report = {
        "ratios": {"vs_seed": 5.0, "vs_floor_pct": 75.0},
        "telemetry": {"overhead_pct": 1.2},
        "cold_start": {"speedup": 12.0, "wwts_peak_rss_mb_max": 180.0},
    }
    rows = {row["key"]: row for row in verdicts(figures(report))}
    assert list(rows) == list(TARGETS)
    assert rows["vs_seed"]["met"] is True
    assert rows["vs_floor_pct"]["met"] is False
    assert rows["cold_peak_rss_mb"]["met"] is True
    assert rows["soak_growth_mb"] == {**rows["soak_growth_mb"], "figure": None, "met": None}
    no_readings = figures({**report, "soak": {"growth_mb": float("nan")}})
    assert no_readings["soak_growth_mb"] is None  # not measured, so neither met nor missed


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


# -- what the bench runs -------------------------------------------------------------------


def test_wwts_runs_get_only_the_options_that_differ_from_the_defaults() -> None:
    assert WwtsOptions().arguments() == []
    assert WwtsOptions("torch", "cpu", 8).arguments() == ["--runtime", "torch", "--device", "cpu", "--batch-size", "8"]


def test_every_measured_program_runs_as_a_module_of_the_package(tmp_path: Path) -> None:
    """`python -m` and importable names only: the bench works from an installed wheel."""
    measured = bench.variants(tmp_path / "photos", tmp_path / "g.onnx", tmp_path, WwtsOptions(runtime="onnxruntime"))
    assert [v.name for v in measured] == [bench.SEED, bench.WWTS, bench.FLOOR, bench.TORCH]
    for variant in measured:
        assert variant.command[:2] == [sys.executable, "-m"]
        assert importlib.util.find_spec(variant.command[2]) is not None
    torch_measured = bench.variants(tmp_path, tmp_path, tmp_path, WwtsOptions(runtime="torch"))
    assert [v.name for v in torch_measured] == [bench.SEED, bench.WWTS, bench.FLOOR]  # torch is measured anyway


def test_the_children_get_default_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    monkeypatch.setenv("WWTS_ES_URL", "http://127.0.0.1:9200")
    monkeypatch.setenv("WWTS_CACHE", "/somewhere")
    env = bench.default_environment()
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in env and "WWTS_ES_URL" not in env
    assert env["WWTS_CACHE"] == "/somewhere"
    with bench.default_settings():
        assert "WWTS_ES_URL" not in os.environ
    assert os.environ["WWTS_ES_URL"] == "http://127.0.0.1:9200"


def test_run_process_reads_both_pipes_and_the_childs_own_usage(tmp_path: Path) -> None:
    code = "\n".join([
        "import sys, time",
        "for i in range(3): print(i, flush=True); time.sleep(0.1)",
        "print('x' * 70000, file=sys.stderr)",
    ])
    run = bench.run_process([sys.executable, "-c", code], tmp_path, 0.01)
    assert run.stdout.split() == ["0", "1", "2"]
    assert len(run.stderr) > 65536  # drained while stdout was read: no deadlock on a full pipe
    assert run.peak_rss_mb > 1 and run.cpu_seconds >= 0
    # readings of a live child (a zombie's 0 is not one); right after exec, under load, a
    # child can still be under 1 MB
    assert run.rss_samples and all(rss > 0 for _, rss in run.rss_samples)
    assert [done for done, _ in run.rss_samples] == sorted(done for done, _ in run.rss_samples)
    with pytest.raises(bench.BenchError, match="exited with 3"):
        bench.run_process([sys.executable, "-c", "raise SystemExit(3)"], tmp_path)


def test_the_bench_does_not_import_the_cli() -> None:
    """wwts.cli registers the command from wwts.bench_cli; the bench never imports the CLI,
    and starting any command does not import the bench."""
    code = "import sys, wwts.bench; print('wwts.cli' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
    code = "import sys, wwts.cli; wwts.cli.build_app(); print('wwts.bench' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_the_floor_prepares_the_crop_the_pipeline_prepares(data_dir: Path) -> None:
    """The floor does the same work per image and feeds the graph the same pixels."""
    spec = preprocessing(DEFAULT_MODEL)
    for name in ("chelsea.png", "rocket.jpg"):
        _, picture = stages.load(str(data_dir / name), DEFAULT_MAX_PIXELS)
        assert np.array_equal(floor.prepare(data_dir / name, spec), stages.preprocess(picture, spec))


def test_a_child_started_by_the_spawner_reports_its_own_peak_rss(tmp_path: Path) -> None:
    """Started from this (large) process, a tiny child would report this process's peak."""
    import resource

    own_peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / bench.MB
    if own_peak_mb < 300:
        pytest.skip(f"this process peaked at {own_peak_mb:.0f} MB only: nothing to tell apart")
    with bench.spawner() as spawn:
        run = spawn([sys.executable, "-c", "print('ok')"], tmp_path)
    assert run.stdout.strip() == "ok"
    assert run.peak_rss_mb < 150 < own_peak_mb


def test_telemetry_summary_takes_each_repeats_mean_then_the_median() -> None:
    timing = bench.Timing
    on = [[timing(10.0, 20.0), timing(12.0, 20.0)], [timing(22.0, 40.0), timing(22.0, 40.0)], [timing(10.5, 21.0)] * 2]
    off = [[timing(10.0, 19.0), timing(10.0, 19.0)], [timing(20.0, 38.0), timing(20.0, 38.0)], [timing(10.0, 20.0)] * 2]
    summary = bench.telemetry_summary(on, off, images=100)
    assert summary["overhead_pct_runs"] == [10.0, 10.0, 5.0] and summary["overhead_pct"] == 10.0
    assert summary["on_ms_per_image"] == 110.0 and summary["off_ms_per_image"] == 100.0
    assert summary["cpu_overhead_pct_runs"] == [5.26, 5.26, 5.0] and summary["cpu_overhead_pct"] == 5.26


def test_process_ratios_pair_the_programs_of_each_repeat() -> None:
    def runs(*seconds: float) -> list[bench.Run]:
        return [bench.Run(s, 100.0, s, None, "", "") for s in seconds]

    found = bench.process_ratios({
        bench.SEED: runs(14.0, 28.0, 13.0), bench.WWTS: runs(3.5, 5.0, 3.25),
        bench.FLOOR: runs(3.5, 4.0, 3.0), bench.TORCH: runs(7.0, 10.0, 6.5),
    })
    assert found == {"vs_seed": 4.0, "vs_floor_pct": 92.3, "floor_vs_seed": 4.33, "torch_vs_default": 0.5}
