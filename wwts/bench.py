"""`wwts bench`: throughput and per-stage latency, measured the way a user runs wwts.

One run alternates, over the same images, repeat after repeat:

* the seed article's loop as a whole process (benchmarks/seed_loop.py),
* `wwts classify DIR` as a whole process (default settings, telemetry on: spans to the
  local trace file, ECS records to the daily log file, in a temporary log directory),
* the pipeline in this process with all telemetry on, then all off (order swapped on
  every other repeat), for the telemetry overhead per image,

then the cold start of `wwts classify one.jpg` and what its imports cost. `--soak N`
runs N images through one in-process pipeline (telemetry on) and reports RSS growth.
Figures are medians over the repeats; the machine's load average is reported with them,
because on a shared 2-core machine the load moves the numbers more than anything else.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any

import typer

ROOT = Path(__file__).resolve().parent.parent
SEED_LOOP = ROOT / "benchmarks" / "seed_loop.py"
PHOTOS = ROOT / "benchmarks" / "photos.py"
STAGES = ("load", "preprocess", "forward", "postprocess", "total")
TARGET_SPEEDUP = 3.0
TARGET_OVERHEAD_PCT = 3.0
TARGET_SOAK_MB = 50.0

# -- pure helpers (tested in tests/test_bench.py) ----------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between closest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    position = (len(ordered) - 1) * min(max(q, 0.0), 100.0) / 100.0
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (position - low))


def stage_summary(latencies: Iterable[dict[str, float]]) -> dict[str, dict[str, float]]:
    """p50/p95 per stage over the results' `latency_ms` dicts (stages that occur)."""
    columns: dict[str, list[float]] = {}
    for latency in latencies:
        for stage, value in latency.items():
            columns.setdefault(stage, []).append(value)
    ordered = [s for s in STAGES if s in columns] + sorted(set(columns) - set(STAGES))
    return {
        stage: {"p50": round(percentile(columns[stage], 50), 3), "p95": round(percentile(columns[stage], 95), 3)}
        for stage in ordered
    }


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def overhead_pct(on_ms: float, off_ms: float) -> float:
    """How much more time per image telemetry costs, in percent of the time without it."""
    return (on_ms - off_ms) / off_ms * 100.0 if off_ms > 0 else float("nan")


OWN_PACKAGES = frozenset({"wwts", "pipeline", "telemetry", "benchmarks"})


def parse_importtime(text: str, top: int = 8) -> list[tuple[str, float]]:
    """Third-party packages by cumulative import time (ms) from `python -X importtime`:
    each package's own line (`torch`, not `torch.nn`), wherever it was first imported
    (`torch` comes in through `wwts.classify`); our own packages are left out."""
    totals: dict[str, float] = {}
    pattern = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|\s*(\S+)")
    for line in text.splitlines():
        match = pattern.match(line)
        if match and "." not in match.group(3) and match.group(3) not in OWN_PACKAGES:
            name = match.group(3)
            totals[name] = max(totals.get(name, 0.0), int(match.group(2)) / 1000.0)
    return sorted(totals.items(), key=lambda item: -item[1])[:top]


def import_seconds(text: str) -> float:
    """Total import time: the sum of the top-level lines' cumulative times."""
    pattern = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\| \S")
    return sum(int(m.group(2)) for m in map(pattern.match, text.splitlines()) if m) / 1e6


def cycle(items: Sequence[str], count: int) -> list[str]:
    """`count` items, repeating the list as often as needed."""
    if not items:
        return []
    return [items[i % len(items)] for i in range(count)]


# -- the measured runs ------------------------------------------------------------------


def _load_photos_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("wwts_bench_photos", PHOTOS)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(PHOTOS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _image_list(paths: list[Path], count: int) -> list[str]:
    if paths:
        from pipeline.inputs import expand

        found = [p for p in expand(paths, recursive=True) if isinstance(p, str)]
        return cycle(found, count) if len(found) < count else found[:count]
    return sorted(str(p) for p in _load_photos_module().build(count).iterdir() if not p.name.startswith("."))


def _link_dir(images: list[str], directory: Path) -> Path:
    """A directory of the images under ordered names, so both processes see the same set."""
    directory.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(images):
        (directory / f"{index:05d}{Path(image).suffix.lower()}").symlink_to(Path(image).resolve())
    return directory


def _clean_env() -> dict[str, str]:
    """The environment of a user with default settings: no OTEL_* or WWTS_* overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "WWTS_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    return env


def _timed_process(command: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess[bytes]]:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=_clean_env(), capture_output=True, check=False)
    return time.perf_counter() - started, done


def run_seed(directory: Path, work: Path) -> float:
    seconds, done = _timed_process([sys.executable, str(SEED_LOOP), str(directory)], work)
    if done.returncode != 0:
        raise RuntimeError(f"seed loop failed: {done.stderr.decode(errors='replace')[-2000:]}")
    return seconds


def run_wwts(arguments: list[str], work: Path) -> float:
    command = [sys.executable, "-m", "wwts.cli", "classify", *arguments, "--log-dir", str(work / "logs")]
    seconds, done = _timed_process(command, work)
    if done.returncode != 0:
        raise RuntimeError(f"wwts classify failed ({done.returncode}): {done.stderr.decode(errors='replace')[-2000:]}")
    return seconds


class InProcess:
    """The pipeline in this process: one model, a fresh telemetry session per run."""

    def __init__(
        self, device: str, batch_size: int | str, workers: int, log_dir: Path
    ) -> None:
        from pipeline.device import resolve
        from pipeline.models import DEFAULT_MODEL, create

        from wwts.classify import auto_batch_size

        self.device = resolve(device)
        self.model = create(DEFAULT_MODEL)
        self.batch_size = auto_batch_size(self.device.type) if batch_size == "auto" else int(batch_size)
        self.workers = workers
        self.log_dir = log_dir
        self._sink = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - console lines, formatted then dropped

    def run(self, images: list[str], telemetry_on: bool, each: Callable[[int], None] | None = None) -> dict[str, Any]:
        import logging

        from pipeline.runner import Runner
        from telemetry.session import Telemetry, TelemetryConfig
        from wwts import __version__
        from wwts.classify import cpu_threads

        gc.collect()
        started = time.perf_counter()
        telemetry = Telemetry(
            TelemetryConfig(
                log_dir=self.log_dir, service_version=__version__, enabled=telemetry_on,
                console=self._sink, console_level=logging.INFO,
            )
        ).start()
        latencies = []
        try:
            runner = Runner(
                self.model, self.device, batch_size=self.batch_size, workers=self.workers,
                hooks=telemetry.hooks(self.model.name, str(self.device)),
                cpu_threads=cpu_threads(self.workers),  # as `wwts classify` does
            )
            for index, result in enumerate(runner.run(images)):
                if not result.ok:
                    raise RuntimeError(f"{result.path}: {result.error!r}")
                latencies.append(result.latency_ms)
                if each is not None:
                    each(index)
        finally:
            telemetry.shutdown()
        seconds = time.perf_counter() - started
        return {"seconds": seconds, "ms_per_image": seconds * 1000.0 / len(images), "latencies": latencies}


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def cold_start(image: str, work: Path, repeats: int) -> dict[str, Any]:
    walls = [run_wwts([image], work) for _ in range(repeats)]
    command = [sys.executable, "-X", "importtime", "-m", "wwts.cli", "classify", image, "--log-dir", str(work / "logs")]
    done = subprocess.run(command, cwd=work, env=_clean_env(), capture_output=True, text=True, check=False)
    imports = parse_importtime(done.stderr)
    import_total = import_seconds(done.stderr) * 1000.0
    return {
        "image": image,
        "wall_s": [round(w, 3) for w in walls],
        "median_wall_s": round(median(walls), 3),
        "imports_ms": round(import_total, 1),
        "top_imports_ms": [[name, round(ms, 1)] for name, ms in imports],
    }


def soak(inproc: InProcess, images: list[str], count: int, warmup: int = 200) -> dict[str, Any]:
    """RSS over `count` images in one process, telemetry on; growth is measured from
    after `warmup` images (allocator and caches settled) to the end."""
    stream = cycle(images, count)
    marks: dict[int, float] = {}
    every = max(1, count // 10)

    def each(index: int) -> None:
        if index + 1 == min(warmup, count) or (index + 1) % every == 0:
            marks[index + 1] = round(rss_mb(), 1)

    before = rss_mb()
    outcome = inproc.run(stream, telemetry_on=True, each=each)
    gc.collect()
    after = rss_mb()
    baseline = marks.get(min(warmup, count), before)
    return {
        "images": count,
        "rss_start_mb": round(before, 1),
        "rss_after_warmup_mb": baseline,
        "rss_end_mb": round(after, 1),
        "growth_mb": round(after - baseline, 1),
        "growth_from_start_mb": round(after - before, 1),
        "marks_mb": marks,
        "images_per_s": round(count / outcome["seconds"], 2),
    }


def measure(
    images: list[str], repeats: int, batch_size: int | str, workers: int, device: str, processes: bool,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    report: dict[str, Any] = {"images": len(images), "repeats": repeats, "load_before": load_average()}
    with tempfile.TemporaryDirectory(prefix="wwts-bench-") as tmp:
        work = Path(tmp)
        directory = _link_dir(images, work / "photos")
        inproc = InProcess(device, batch_size, workers, work / "inproc-logs")
        report["batch_size"], report["workers"], report["device"] = inproc.batch_size, workers, str(inproc.device)
        inproc.run(images[: min(len(images), 16)], telemetry_on=False)  # warm-up: first-call allocations
        seed_s: list[float] = []
        wwts_s: list[float] = []
        on: list[dict[str, Any]] = []
        off: list[dict[str, Any]] = []
        rss_start = rss_mb()
        for repeat in range(repeats):
            if processes:
                progress(f"repeat {repeat + 1}/{repeats}: seed loop (whole process)")
                seed_s.append(run_seed(directory, work))
                progress(f"repeat {repeat + 1}/{repeats}: wwts classify (whole process)")
                wwts_s.append(run_wwts([str(directory)], work))
            order = (True, False) if repeat % 2 == 0 else (False, True)
            for telemetry_on in order:
                progress(f"repeat {repeat + 1}/{repeats}: in-process, telemetry {'on' if telemetry_on else 'off'}")
                (on if telemetry_on else off).append(inproc.run(images, telemetry_on))
        report["rss_in_process_mb"] = {"before": round(rss_start, 1), "after": round(rss_mb(), 1)}
        n = len(images)
        if processes:
            seed_rate, wwts_rate = n / median(seed_s), n / median(wwts_s)
            report["seed_process"] = {"seconds": [round(s, 3) for s in seed_s], "images_per_s": round(seed_rate, 2)}
            report["wwts_process"] = {"seconds": [round(s, 3) for s in wwts_s], "images_per_s": round(wwts_rate, 2)}
            report["speedup"] = round(wwts_rate / seed_rate, 2)
        on_ms, off_ms = median([r["ms_per_image"] for r in on]), median([r["ms_per_image"] for r in off])
        report["telemetry"] = {
            "on_ms_per_image": round(on_ms, 3),
            "off_ms_per_image": round(off_ms, 3),
            "on_ms_per_image_runs": [round(r["ms_per_image"], 3) for r in on],
            "off_ms_per_image_runs": [round(r["ms_per_image"], 3) for r in off],
            "overhead_pct": round(overhead_pct(on_ms, off_ms), 2),
            "in_process_images_per_s": round(1000.0 / on_ms, 2),
        }
        report["stages_ms"] = {
            "telemetry_on": stage_summary(lat for r in on for lat in r["latencies"]),
            "telemetry_off": stage_summary(lat for r in off for lat in r["latencies"]),
        }
        progress("cold start: wwts classify one image")
        report["cold_start"] = cold_start(images[0], work, repeats)
        report["inproc"] = inproc
    report["load_after"] = load_average()
    return report


# -- the command ------------------------------------------------------------------------


def bench(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Images or directories (default: 300 photos built from tests/data).", show_default=False),
    ] = None,
    images: Annotated[int, typer.Option("--images", "-n", min=1, help="How many images per run.")] = 300,
    repeats: Annotated[int, typer.Option("--repeats", "-r", min=1, help="Alternating repeats; medians reported.")] = 3,
    batch_size: Annotated[str, typer.Option("--batch-size", help="In-process batch size, or 'auto'.")] = "auto",
    workers: Annotated[int, typer.Option("--workers", min=0, help="In-process decode threads.")] = 1,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N (in-process runs).")] = "cpu",
    processes: Annotated[
        bool, typer.Option("--processes/--no-processes", help="Also time the seed loop and wwts classify as processes.")
    ] = True,
    soak_images: Annotated[
        int, typer.Option("--soak", min=0, help="Also run N images in one process and report RSS growth.")
    ] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Throughput and per-stage latency: wwts vs the seed loop, telemetry on vs off."""
    from wwts.cli import parse_batch_size

    size = parse_batch_size(batch_size)
    selected = _image_list(list(paths or []), images)
    if not selected:
        typer.echo("wwts: error: no images to benchmark", err=True)
        raise typer.Exit(2)
    progress = (lambda _m: None) if as_json else (lambda m: typer.echo(f"… {m}", err=True))
    report = measure(selected, repeats, size, workers, device, processes, progress)
    inproc = report.pop("inproc")
    if soak_images:
        progress(f"soak: {soak_images} images in one process, telemetry on")
        with tempfile.TemporaryDirectory(prefix="wwts-soak-") as tmp:
            inproc.log_dir = Path(tmp)
            report["soak"] = soak(inproc, selected, soak_images)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        _print_report(report)


def _print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    title = (
        f"wwts bench — {report['images']} images × {report['repeats']} repeats, device {report['device']}, "
        f"batch {report['batch_size']}, workers {report['workers']}, load avg {report['load_before']}→{report['load_after']}"
    )
    table = Table(title=title)
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    if "speedup" in report:
        table.add_row("seed loop, whole process", f"{report['seed_process']['images_per_s']:.2f} img/s", "")
        table.add_row("wwts classify DIR, whole process", f"{report['wwts_process']['images_per_s']:.2f} img/s", "")
        table.add_row("speed-up", f"{report['speedup']:.2f}×", f"≥ {TARGET_SPEEDUP:.1f}×")
    t = report["telemetry"]
    table.add_row("in-process, telemetry on", f"{t['on_ms_per_image']:.2f} ms/img", "")
    table.add_row("in-process, telemetry off", f"{t['off_ms_per_image']:.2f} ms/img", "")
    table.add_row("telemetry overhead", f"{t['overhead_pct']:+.2f} %", f"≤ {TARGET_OVERHEAD_PCT:.0f} %")
    cold = report["cold_start"]
    table.add_row("cold start, one image", f"{cold['median_wall_s']:.2f} s", "")
    table.add_row(
        "  of which imports",
        f"{cold['imports_ms'] / 1000:.2f} s",
        ", ".join(f"{name} {ms / 1000:.2f}s" for name, ms in cold["top_imports_ms"][:4]),
    )
    if "soak" in report:
        s = report["soak"]
        table.add_row(f"RSS growth over {s['images']} images", f"{s['growth_mb']:+.1f} MB", f"≤ {TARGET_SOAK_MB:.0f} MB")
    console.print(table)
    stages = Table(title="per-stage latency, in-process (ms)")
    stages.add_column("stage")
    for label in ("on p50", "on p95", "off p50", "off p95"):
        stages.add_column(label, justify="right")
    on, off = report["stages_ms"]["telemetry_on"], report["stages_ms"]["telemetry_off"]
    for stage in on:
        stages.add_row(
            stage, f"{on[stage]['p50']:.2f}", f"{on[stage]['p95']:.2f}",
            f"{off.get(stage, {}).get('p50', float('nan')):.2f}", f"{off.get(stage, {}).get('p95', float('nan')):.2f}",
        )
    console.print(stages)


if __name__ == "__main__":  # pragma: no cover
    typer.run(bench)
