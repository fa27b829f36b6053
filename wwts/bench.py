"""`wwts bench`: the benchmark targets (benchmarks/README.md), each a ratio measured in
one run on the same photos, with the load average beside it (on a shared small machine
the load moves the numbers more than anything else).

Every measured program runs as `python -m ...` with the settings of a user who set
nothing (no `OTEL_*`/`WWTS_*` variable but `WWTS_CACHE`), stdout and stderr to pipes, so
the bench works alike from a checkout and from an installed wheel. Each repeat runs, in
an order rotated from repeat to repeat:

* `benchmarks.seed_loop DIR`, the seed article's loop: the baseline;
* `wwts.cli classify DIR` with default settings, telemetry on (the local trace file and
  the records in a temporary log directory);
* `benchmarks.floor GRAPH DIR`, the least a pipeline can do, on wwts's cached graph;
* `wwts.cli classify DIR --runtime torch` (unless torch is the runtime measured anyway);

then, in this process, the command's own code path (`wwts.classify.run_classify`: the
`Pipeline` and `Telemetry` exactly as the command wires them) with telemetry on and off,
on-off-off-on (off-on-on-off the next repeat) so that a drifting load falls on both.
A ratio is the median of its per-repeat ratios: runs next to each other share the load.

Then one photo cold, alternated: `wwts classify PHOTO`, the seed loop on a one-photo
directory and the floor, wall clock and the child's peak RSS (`os.wait4`, see
`spawner`), and one `-X importtime` run. `--soak N`: one `wwts classify` over N images,
its RSS read while it runs. The figures belong in benchmarks/README.md, not here.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import typer

from pipeline.defaults import STAGES, TOTAL
from pipeline.device import AUTO
from pipeline.runtimes import TORCH as TORCH_RUNTIME
from telemetry.names import INFERENCE, RECORDS_PREFIX
from wwts.errors import UsageError, WwtsError
from wwts.settings import DEFAULT_RUNTIME

SEED_MODULE, FLOOR_MODULE, CLI_MODULE = "benchmarks.seed_loop", "benchmarks.floor", "wwts.cli"  # run with -m
SEED, WWTS, FLOOR, TORCH = "seed loop", "wwts classify", "floor", "wwts classify --runtime torch"
KEPT_VARIABLES = frozenset({"WWTS_CACHE"})  # where the graph and the photos are cached
OWN_PACKAGES = frozenset({"wwts", "pipeline", "telemetry", "queries", "deploy", "benchmarks"})
WARMUP_IMAGES = 8  # the first in-process run imports ONNX Runtime and OpenTelemetry
SOAK_WARMUP = 300  # results before the soak's baseline: every photo decoded once, the queue full
SOAK_SAMPLE_S = 0.25  # how often the soak's RSS is read
MB = 1_000_000  # the targets are in MB

T = TypeVar("T")


@dataclass(frozen=True)
class Target:
    """A benchmark target: a figure at least or at most `limit`."""

    label: str
    limit: float
    at_least: bool
    unit: str

    def met(self, value: float | None) -> bool:
        if value is None or math.isnan(value):
            return False
        return value >= self.limit if self.at_least else value <= self.limit

    def text(self) -> str:
        return f"{'≥' if self.at_least else '≤'} {self.limit:g}{self.unit}"


TARGETS: dict[str, Target] = {
    "vs_seed": Target("wwts classify DIR vs the seed loop (throughput)", 4.5, True, "×"),
    "vs_floor_pct": Target("wwts classify DIR vs the floor (throughput)", 80.0, True, " %"),
    "cold_vs_seed": Target("one photo cold: seed script / wwts (wall)", 5.0, True, "×"),
    "cold_peak_rss_mb": Target("one photo cold: wwts peak RSS", 300.0, False, " MB"),
    "telemetry_pct": Target("telemetry on vs off, in process", 3.0, False, " %"),
    "soak_growth_mb": Target("RSS growth over the soak (after its warm-up)", 50.0, False, " MB"),
}

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


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def ratio_median(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    """The median of the pairwise ratios: pairs are runs of one repeat, next to each other
    in time, so a load that changes between repeats cancels out of each ratio."""
    pairs = [a / b for a, b in zip(numerators, denominators, strict=True) if b > 0]
    return median(pairs)


def overhead_pct(on: float, off: float) -> float:
    """How much more time telemetry costs, in percent of the time without it."""
    return (on - off) / off * 100.0 if off > 0 else float("nan")


@dataclass(frozen=True)
class Timing:
    """One in-process run: wall clock and the process's CPU time (every thread)."""

    seconds: float
    cpu_seconds: float


def telemetry_summary(on: Sequence[Sequence[Timing]], off: Sequence[Sequence[Timing]], images: int) -> dict[str, Any]:
    """Per repeat the mean of its runs with telemetry on and off; ms per image are the
    medians over the repeats, an overhead the median of the repeats' own overheads. CPU
    time is less moved by other jobs than the wall clock: it says what telemetry costs
    the machine, the wall clock what it costs a user."""
    def per_repeat(runs: Sequence[Sequence[Timing]], cpu: bool) -> list[float]:
        return [statistics.fmean(t.cpu_seconds if cpu else t.seconds for t in repeat) for repeat in runs]

    summary: dict[str, Any] = {}
    for cpu, prefix in ((False, ""), (True, "cpu_")):
        with_it, without = per_repeat(on, cpu), per_repeat(off, cpu)
        overheads = [overhead_pct(a, b) for a, b in zip(with_it, without, strict=True)]
        summary |= {
            f"{prefix}on_ms_per_image": round(median(with_it) * 1000 / images, 3),
            f"{prefix}off_ms_per_image": round(median(without) * 1000 / images, 3),
            f"{prefix}overhead_pct": round(median(overheads), 2),
            f"{prefix}overhead_pct_runs": [round(x, 2) for x in overheads],
        }
    return summary


def rotated(items: Sequence[T], shift: int) -> list[T]:
    """The items starting at `shift` (mod the length): each variant takes every place in
    the order over the repeats, so none always runs first on a cold cache."""
    if not items:
        return []
    start = shift % len(items)
    return [*items[start:], *items[:start]]


def abba(repeat: int) -> tuple[bool, ...]:
    """Telemetry on/off order for one repeat: on-off-off-on, then off-on-on-off."""
    return (True, False, False, True) if repeat % 2 == 0 else (False, True, True, False)


def cycle(items: Sequence[str], count: int) -> list[str]:
    """`count` items, repeating the list as often as needed."""
    if not items:
        return []
    return [items[i % len(items)] for i in range(count)]


def stage_summary(latencies: Iterable[Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """p50/p95 per stage over the results' `latency_ms` dicts (stages that occur), the
    pipeline's stages first, in their order."""
    columns: dict[str, list[float]] = {}
    for latency in latencies:
        for stage, value in latency.items():
            columns.setdefault(stage, []).append(value)
    known = (*STAGES, TOTAL)
    ordered = [s for s in known if s in columns] + sorted(set(columns) - set(known))
    return {
        stage: {"p50": round(percentile(columns[stage], 50), 3), "p95": round(percentile(columns[stage], 95), 3)}
        for stage in ordered
    }


def record_latencies(lines: Iterable[str]) -> list[dict[str, float]]:
    """`wwts.latency_ms` of each inference record in ECS JSON lines (others skipped)."""
    found = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("event", {}).get("dataset") == INFERENCE:
            latency = record.get("wwts", {}).get("latency_ms")
            if isinstance(latency, dict):
                found.append(latency)
    return found


def parse_summary(text: str, program: str) -> dict[str, float]:
    """The `key=value` figures of the last `<program> k=v ...` line a program printed
    (`seed_loop images=300 seconds=28.1 ...`); empty if there is none."""
    pattern = re.compile(rf"^{re.escape(program)}((?:\s+\w+=[-+.\deE]+)+)\s*$")
    for line in reversed(text.splitlines()):
        match = pattern.match(line)
        if match:
            return {key: float(value) for key, value in (pair.split("=") for pair in match.group(1).split())}
    return {}


def parse_importtime(text: str, top: int = 8) -> list[tuple[str, float]]:
    """Third-party packages by cumulative import time (ms) from `python -X importtime`:
    each package's own line (`torch`, not `torch.nn`), wherever it was first imported
    (`onnxruntime` comes in through `pipeline.runtimes.ort`); our own packages are left out."""
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


def soak_growth(samples: Sequence[tuple[int, float]], count: int, warmup: int) -> dict[str, float]:
    """RSS growth (MB) over a soak from its (results so far, RSS) readings: the median
    of the readings in the last tenth of the results less the median of those in the
    tenth after the warm-up. Medians over windows, not two single readings, so that a
    transient (a PNG being decoded, the final flush) moves neither end; readings taken
    after the last result (the shutdown) are left out. A window no reading fell in (a
    short soak) takes the reading nearest to it."""
    during = [(done, rss) for done, rss in samples if done < count]
    if not during:
        nan = float("nan")
        return {"rss_after_warmup_mb": nan, "rss_end_mb": nan, "rss_max_mb": nan, "growth_mb": nan}
    tenth = max(1, count // 10)

    def window(low: int, high: int) -> float:
        inside = [rss for done, rss in during if low <= done < high]
        if inside:
            return median(inside)
        return min(during, key=lambda reading: min(abs(reading[0] - low), abs(reading[0] - high)))[1]

    start = warmup if warmup + 2 * tenth <= count else tenth  # too short for the warm-up: skip a tenth
    first, last = window(start, start + tenth), window(count - tenth, count)
    return {
        "rss_after_warmup_mb": round(first, 1), "rss_end_mb": round(last, 1),
        "rss_max_mb": round(max(rss for _, rss in during), 1), "growth_mb": round(last - first, 1),
    }


def verdict_word(met: bool | None) -> str:
    """How a report prints a verdict row's `met` ("" for a target that was not measured)."""
    return "" if met is None else ("met" if met else "MISSED")


def verdicts(figures: Mapping[str, float | None], targets: Mapping[str, Target] = TARGETS) -> list[dict[str, Any]]:
    """Each target with the run's figure (None where that part did not run)."""
    rows = []
    for key, target in targets.items():
        value = figures.get(key)
        rows.append({
            "key": key, "label": target.label, "figure": value, "target": target.text(),
            "met": None if value is None else target.met(value),
        })
    return rows


# -- processes ---------------------------------------------------------------------------


@dataclass
class Run:
    """One child process, timed from outside."""

    seconds: float
    peak_rss_mb: float  # ru_maxrss of the child
    cpu_seconds: float  # user + system
    load: float | None  # the 1-minute load average when it started
    stdout: str
    stderr: str
    rss_samples: list[tuple[int, float]] = field(default_factory=list)  # (results so far, RSS MB)


class BenchError(WwtsError):
    """A measured program failed or classified fewer images than it was given (exit 1)."""


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def default_environment() -> dict[str, str]:
    """This process's environment without a user's `OTEL_*`/`WWTS_*` settings."""
    return {
        key: value for key, value in os.environ.items()
        if not key.startswith(("OTEL_", "WWTS_")) or key in KEPT_VARIABLES
    }


@contextlib.contextmanager
def default_settings() -> Iterator[None]:
    """`default_environment` for code run in this process, restored afterwards."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(default_environment())
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def run_process(command: list[str], cwd: Path, sample_s: float | None = None) -> Run:
    """Run to the end with stdout and stderr on pipes. The child is reaped with
    `os.wait4` for its peak RSS and CPU time (the peak is at least this process's own:
    see `spawner`); with `sample_s`, its RSS is also read that often, beside how many
    stdout lines (results) it had written by then."""
    load = load_average()
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=cwd, env=default_environment(), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    errors: list[bytes] = []
    stderr_pipe = process.stderr
    drain = threading.Thread(target=lambda: errors.append(stderr_pipe.read()), daemon=True)
    drain.start()
    lines: list[bytes] = []
    samples: list[tuple[int, float]] = []
    done = threading.Event()
    if sample_s is not None:
        threading.Thread(target=_sample_rss, args=(process.pid, sample_s, lines, samples, done), daemon=True).start()
    lines.extend(process.stdout)
    done.set()
    drain.join()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    process.stdout.close()
    process.stderr.close()
    stderr = b"".join(errors).decode(errors="replace")
    if process.returncode != 0:
        raise BenchError(f"{' '.join(command[1:4])} … exited with {process.returncode}: {stderr[-2000:]}")
    return Run(
        seconds=seconds, peak_rss_mb=usage.ru_maxrss * 1024 / MB, cpu_seconds=usage.ru_utime + usage.ru_stime,
        load=load, stdout=b"".join(lines).decode(errors="replace"), stderr=stderr, rss_samples=samples,
    )


def _sample_rss(pid: int, every_s: float, lines: list[bytes], samples: list[tuple[int, float]],
                done: threading.Event) -> None:
    import psutil

    try:
        process = psutil.Process(pid)
        while not done.wait(every_s):
            rss = process.memory_info().rss
            if rss == 0:  # exited, not yet reaped: a zombie has no memory to read
                return
            samples.append((len(lines), round(rss / MB, 1)))
    except psutil.Error:  # it has just exited
        pass


Spawn = Callable[..., Run]  # run_process's signature


@contextlib.contextmanager
def spawner() -> Iterator[Spawn]:
    """`run_process` in a small helper process, so that a child's peak RSS is its own.

    Linux gives a child started with vfork or posix_spawn (what `subprocess` uses) the
    peak RSS of its parent's memory at `exec` as its starting `ru_maxrss`; after the
    in-process runs this process's peak is hundreds of MB, more than a cold wwts needs.
    The helper is forked from a fresh interpreter (multiprocessing's forkserver) and
    stays at a few tens of MB."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("forkserver")) as pool:
        yield lambda *arguments: pool.submit(run_process, *arguments).result()


@dataclass(frozen=True)
class WwtsOptions:
    """What the bench passes to `wwts classify` (defaults: the command's own)."""

    runtime: str = DEFAULT_RUNTIME
    device: str = AUTO
    batch_size: int | None = None  # None: auto

    def arguments(self) -> list[str]:
        """Only what differs from the command's defaults: default settings stay default."""
        given = []
        if self.runtime != DEFAULT_RUNTIME:
            given += ["--runtime", self.runtime]
        if self.device != AUTO:
            given += ["--device", self.device]
        if self.batch_size is not None:
            given += ["--batch-size", str(self.batch_size)]
        return given

    @functools.cached_property
    def resolved_runtime(self) -> str:
        """The runtime `auto` settles on here (asked once: it may start NVML)."""
        from pipeline.runtimes import plan

        return plan(self.runtime, self.device).runtime


@dataclass(frozen=True)
class Variant:
    """A program measured as a whole process, and how to count what it classified."""

    name: str
    command: list[str]
    count: Callable[[Run], int]


def _summary_count(program: str) -> Callable[[Run], int]:
    return lambda run: int(parse_summary(run.stdout, program).get("images", -1))


def _line_count(run: Run) -> int:
    return len(run.stdout.splitlines())  # one stdout line per input


def classify_command(inputs: Sequence[Path | str], log_dir: Path, options: WwtsOptions) -> list[str]:
    return [sys.executable, "-m", CLI_MODULE, "classify", *map(str, inputs), "--log-dir", str(log_dir),
            *options.arguments()]


def seed_command(directory: Path) -> list[str]:
    return [sys.executable, "-m", SEED_MODULE, str(directory)]


def floor_command(graph: Path, directory: Path, options: WwtsOptions) -> list[str]:
    batch = ["--batch", str(options.batch_size)] if options.batch_size is not None else []
    return [sys.executable, "-m", FLOOR_MODULE, str(graph), str(directory), *batch]


def variants(photos: Path, graph: Path, work: Path, options: WwtsOptions) -> list[Variant]:
    from benchmarks import floor, seed_loop

    measured = [
        Variant(SEED, seed_command(photos), _summary_count(seed_loop.SUMMARY)),
        Variant(WWTS, classify_command([photos], work / "logs-wwts", options), _line_count),
        Variant(FLOOR, floor_command(graph, photos, options), _summary_count(floor.SUMMARY)),
    ]
    if options.resolved_runtime != TORCH_RUNTIME:
        torch = WwtsOptions(TORCH_RUNTIME, options.device, options.batch_size)
        measured.append(Variant(TORCH, classify_command([photos], work / "logs-torch", torch), _line_count))
    return measured


def run_variant(variant: Variant, spawn: Spawn, work: Path, expected: int) -> Run:
    run = spawn(variant.command, work)
    if (count := variant.count(run)) != expected:
        raise BenchError(f"{variant.name} classified {count} images, not {expected}: {run.stderr[-2000:]}")
    return run


def process_summary(runs: Sequence[Run], images: int) -> dict[str, Any]:
    seconds = [r.seconds for r in runs]
    return {
        "seconds": [round(s, 2) for s in seconds],
        "images_per_s": round(images / median(seconds), 2),
        "peak_rss_mb": round(median([r.peak_rss_mb for r in runs]), 1),
        "cpu_seconds": round(median([r.cpu_seconds for r in runs]), 2),
        "load": [r.load for r in runs],
    }


# -- in this process: the command's own code path ------------------------------------------


def in_process(directory: Path, log_dir: Path, telemetry_on: bool, options: WwtsOptions) -> Timing:
    """`run_classify` over `directory`, as `wwts classify DIR` runs it: the
    stdout and console lines are written to /dev/null, stderr line-buffered as Python
    makes a real one (one write per line, each a system call that lets go of the GIL)."""
    from wwts.classify import ClassifyOptions, run_classify
    from wwts.settings import Settings

    classify = ClassifyOptions(
        paths=[str(directory)], runtime=options.runtime, device=options.device, batch_size=options.batch_size,
        log_dir=log_dir, telemetry=telemetry_on,
    )
    with (
        open(os.devnull, "w", encoding="utf-8") as out,
        open(os.devnull, "w", encoding="utf-8", buffering=1) as err,
        default_settings(),
        contextlib.redirect_stderr(err),
    ):
        gc.collect()
        started, cpu = time.perf_counter(), time.process_time()
        code = run_classify(classify, Settings(), out=out)
        timing = Timing(time.perf_counter() - started, time.process_time() - cpu)
    if code != 0:
        raise BenchError(f"run_classify over {directory} returned {code}")
    return timing


def logged_latencies(log_dir: Path) -> list[dict[str, float]]:
    found: list[dict[str, float]] = []
    for path in sorted(log_dir.glob(f"{RECORDS_PREFIX}-*.jsonl")):
        found += record_latencies(path.read_text(encoding="utf-8").splitlines())
    return found


# -- the parts of a run ------------------------------------------------------------------


def link_dir(images: Sequence[str], directory: Path) -> Path:
    """A directory of the images under ordered names, so that every program sees the same set."""
    directory.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(images):
        (directory / f"{index:05d}{Path(image).suffix.lower()}").symlink_to(Path(image).resolve())
    return directory


def image_list(paths: list[Path], count: int) -> list[str]:
    if paths:
        from pipeline.inputs import expand

        found = [p for p in expand(paths, recursive=True) if isinstance(p, str) and os.path.isfile(p)]
        return cycle(found, count) if len(found) < count else found[:count]
    from benchmarks.photos import build

    directory = build(count)
    return sorted(str(p) for p in directory.iterdir() if not p.name.startswith("."))


def default_graph(notify: Callable[[str], None]) -> Path:
    """The ONNX graph `wwts classify` runs by default (exported here on a first run)."""
    from pipeline.models import DEFAULT_MODEL, family
    from pipeline.runtimes.export import cached_graph
    from wwts.settings import default_cache_dir

    return cached_graph(family(DEFAULT_MODEL), None, default_cache_dir(), notify)


def telemetry_pairs(
    photos: Path, work: Path, repeat: int, options: WwtsOptions, progress: Callable[[str], None]
) -> tuple[list[Timing], list[Timing], Path]:
    """One repeat's in-process runs with telemetry on, with it off, and the log directory
    of the runs with it on."""
    on: list[Timing] = []
    off: list[Timing] = []
    logs = work / f"logs-in-process-{repeat}"  # written only with telemetry on
    for telemetry_on in abba(repeat):
        progress(f"repeat {repeat + 1}: in process, telemetry {'on' if telemetry_on else 'off'}")
        (on if telemetry_on else off).append(in_process(photos, logs, telemetry_on, options))
    return on, off, logs


def cold_start(
    photo: str, graph: Path, spawn: Spawn, work: Path, repeats: int, options: WwtsOptions,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """One photo, whole process, wall and peak RSS: wwts against the seed script (and the
    floor, for scale), alternated."""
    one = link_dir([photo], work / "one-photo")
    photo_path = next(one.iterdir())
    commands = {
        WWTS: classify_command([photo_path], work / "logs-cold", options), SEED: seed_command(one),
        FLOOR: floor_command(graph, one, options),
    }
    runs: dict[str, list[Run]] = {name: [] for name in commands}
    for repeat in range(repeats):
        for name in rotated(list(commands), repeat):
            progress(f"cold start {repeat + 1}/{repeats}: {name}, one photo")
            runs[name].append(spawn(commands[name], work))
    text = spawn([sys.executable, "-X", "importtime", *commands[WWTS][1:]], work).stderr
    wwts_runs, seed_runs = runs[WWTS], runs[SEED]
    return {
        "photo": photo,
        "processes": {name: process_summary(found, 1) for name, found in runs.items()},
        "speedup": round(ratio_median([r.seconds for r in seed_runs], [r.seconds for r in wwts_runs]), 2),
        "wwts_peak_rss_mb_max": round(max(r.peak_rss_mb for r in wwts_runs), 1),
        "imports_s": round(import_seconds(text), 3),
        "top_imports_ms": [[name, round(ms, 1)] for name, ms in parse_importtime(text)],
    }


def soak(images: Sequence[str], count: int, spawn: Spawn, work: Path, options: WwtsOptions) -> dict[str, Any]:
    """`wwts classify` over `count` images (the photos cycled) as one process, its RSS
    read every SOAK_SAMPLE_S (from /proc while it runs: exact whoever started it)."""
    directory = link_dir(cycle(list(images), count), work / "soak-photos")
    run = spawn(classify_command([directory], work / "logs-soak", options), work, SOAK_SAMPLE_S)
    if (classified := _line_count(run)) != count:
        raise BenchError(f"the soak classified {classified} images, not {count}: {run.stderr[-2000:]}")
    return {
        "images": count, "seconds": round(run.seconds, 1), "images_per_s": round(count / run.seconds, 2),
        "warmup": SOAK_WARMUP, "peak_rss_mb": round(run.peak_rss_mb, 1),
        **soak_growth(run.rss_samples, count, SOAK_WARMUP),
    }


def machine() -> dict[str, Any]:
    from pipeline.driver import available_cores

    model = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpu": model, "cores": available_cores(), "python": sys.version.split()[0]}


@dataclass
class BenchPlan:
    images: list[str]
    repeats: int
    options: WwtsOptions
    processes: bool
    soak: int


def measure(plan: BenchPlan, progress: Callable[[str], None]) -> dict[str, Any]:
    n = len(plan.images)
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"), "machine": machine(), "images": n, "repeats": plan.repeats,
        "runtime": plan.options.resolved_runtime, "load_before": load_average(),
    }
    for image in plan.images:  # into the page cache: no variant reads them cold
        Path(image).read_bytes()
    with tempfile.TemporaryDirectory(prefix="wwts-bench-") as tmp, spawner() as spawn:
        work = Path(tmp)
        photos = link_dir(plan.images, work / "photos")
        graph = default_graph(progress) if plan.processes else None
        measured = variants(photos, graph, work, plan.options) if graph is not None else []
        runs: dict[str, list[Run]] = {v.name: [] for v in measured}
        on: list[list[Timing]] = []
        off: list[list[Timing]] = []
        latencies: list[dict[str, float]] = []
        in_process(link_dir(plan.images[:WARMUP_IMAGES], work / "warm-up"), work / "logs-warm-up", True, plan.options)
        for repeat in range(plan.repeats):
            for variant in rotated(measured, repeat):
                progress(f"repeat {repeat + 1}/{plan.repeats}: {variant.name} (whole process)")
                runs[variant.name].append(run_variant(variant, spawn, work, n))
            pair_on, pair_off, logs = telemetry_pairs(photos, work, repeat, plan.options, progress)
            on.append(pair_on)
            off.append(pair_off)
            latencies += logged_latencies(logs)
        report["telemetry"] = telemetry_summary(on, off, n)
        report["stages_ms"] = stage_summary(latencies)
        if graph is not None:
            report["processes"] = {name: process_summary(found, n) for name, found in runs.items()}
            report["ratios"] = process_ratios(runs)
            report["cold_start"] = cold_start(plan.images[0], graph, spawn, work, plan.repeats, plan.options, progress)
        if plan.soak:
            progress(f"soak: wwts classify over {plan.soak} images")
            report["soak"] = soak(plan.images, plan.soak, spawn, work, plan.options)
    report["load_after"] = load_average()
    report["targets"] = verdicts(figures(report))
    return report


def process_ratios(runs: Mapping[str, Sequence[Run]]) -> dict[str, float]:
    """Throughput ratios of the whole processes, each the median of the repeats' own."""
    def seconds(name: str) -> list[float]:
        return [r.seconds for r in runs[name]]

    ratios = {
        "vs_seed": round(ratio_median(seconds(SEED), seconds(WWTS)), 2),
        "vs_floor_pct": round(100 * ratio_median(seconds(FLOOR), seconds(WWTS)), 1),
        # what the floor itself makes of the seed loop: about the most a pipeline gets here
        "floor_vs_seed": round(ratio_median(seconds(SEED), seconds(FLOOR)), 2),
    }
    if TORCH in runs:
        ratios["torch_vs_default"] = round(ratio_median(seconds(WWTS), seconds(TORCH)), 2)
    return ratios


def figures(report: Mapping[str, Any]) -> dict[str, float | None]:
    """The targets' figures out of a report (None for parts that did not run or gave no figure)."""
    ratios, cold, soaked = report.get("ratios", {}), report.get("cold_start"), report.get("soak")
    found = {
        "vs_seed": ratios.get("vs_seed"),
        "vs_floor_pct": ratios.get("vs_floor_pct"),
        "cold_vs_seed": cold["speedup"] if cold else None,
        "cold_peak_rss_mb": cold["wwts_peak_rss_mb_max"] if cold else None,
        "telemetry_pct": report["telemetry"]["overhead_pct"] if "telemetry" in report else None,
        "soak_growth_mb": soaked["growth_mb"] if soaked else None,
    }
    return {key: None if value is None or math.isnan(value) else value for key, value in found.items()}


# -- the command ------------------------------------------------------------------------


def run_command(
    paths: list[Path] | None, images: int | None, repeats: int, runtime: str, device: str,
    batch_size: int | None, processes: bool, soak_images: int, as_json: bool,
) -> None:
    """`wwts bench` with its options (`wwts.bench_cli`): measure, then print the report."""
    from benchmarks.photos import DEFAULT_COUNT
    from pipeline.device import DeviceError
    from pipeline.runtimes import RuntimeUnavailable

    options = WwtsOptions(runtime, device, batch_size)
    try:
        options.resolved_runtime  # noqa: B018 - refuses a runtime or device that cannot be had
    except (DeviceError, RuntimeUnavailable) as exc:
        raise UsageError(str(exc)) from None
    selected = image_list(list(paths or []), images or DEFAULT_COUNT)
    if not selected:
        raise UsageError("no images to benchmark")
    progress = (lambda _m: None) if as_json else (lambda m: typer.echo(f"… {m}", err=True))
    report = measure(BenchPlan(selected, repeats, options, processes, soak_images), progress)
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        print_report(report)


def print_report(report: Mapping[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    m = report["machine"]
    console.print(
        f"wwts bench {report['date']}: {report['images']} images × {report['repeats']} repeats, "
        f"runtime {report['runtime']}, {m['cores']} cores ({m['cpu']}), "
        f"load average {report['load_before']} → {report['load_after']}"
    )
    if "processes" in report:
        table = Table(title="whole processes (median of the repeats)")
        for column in ("program", "seconds", "img/s", "peak RSS MB", "CPU s", "load"):
            table.add_column(column, justify="left" if column == "program" else "right")
        for name, row in report["processes"].items():
            table.add_row(name, _seconds(row), f"{row['images_per_s']:.1f}", f"{row['peak_rss_mb']:.0f}",
                          f"{row['cpu_seconds']:.1f}", " ".join(map(str, row["load"])))
        console.print(table)
    targets = Table(title="targets")
    for column in ("measure", "figure", "target", ""):
        targets.add_column(column, justify="left" if column == "measure" else "right")
    for row in report["targets"]:
        figure = "—" if row["figure"] is None else f"{row['figure']:g}{TARGETS[row['key']].unit}"
        targets.add_row(row["label"], figure, row["target"], verdict_word(row["met"]))
    for label, figure, note in _context_rows(report):
        targets.add_row(label, figure, note, "")
    console.print(targets)
    stages = Table(title="per stage, in process with telemetry on (ms)")
    for column in ("stage", "p50", "p95"):
        stages.add_column(column, justify="left" if column == "stage" else "right")
    for stage, row in report["stages_ms"].items():
        stages.add_row(stage, f"{row['p50']:.2f}", f"{row['p95']:.2f}")
    console.print(stages)


def _seconds(row: Mapping[str, Any]) -> str:
    return " ".join(f"{s:.2f}" for s in row["seconds"])


def _context_rows(report: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """The figures beside the targets that say what the targets' figures mean."""
    t, ratios = report["telemetry"], report.get("ratios", {})
    rows = [
        ("  in process, telemetry on / off", f"{t['on_ms_per_image']:.2f} / {t['off_ms_per_image']:.2f} ms/img", ""),
        ("  CPU time, telemetry on / off", f"{t['cpu_on_ms_per_image']:.2f} / {t['cpu_off_ms_per_image']:.2f} ms/img",
         f"{t['cpu_overhead_pct']:+.1f} %"),
    ]
    if "floor_vs_seed" in ratios:
        rows.append(("  the floor vs the seed loop (throughput)", f"{ratios['floor_vs_seed']:.2f}×", ""))
    if "torch_vs_default" in ratios:
        rows.append(("torch runtime vs the default (throughput)", f"{ratios['torch_vs_default']:.2f}×", ""))
    if "cold_start" in report:
        cold = report["cold_start"]
        for name, row in cold["processes"].items():
            rows.append((f"  cold: {name}", f"{_seconds(row)} s, {row['peak_rss_mb']:.0f} MB", ""))
        top = ", ".join(f"{name} {ms:.0f} ms" for name, ms in cold["top_imports_ms"][:4])
        rows.append(("  cold: wwts imports", f"{cold['imports_s']:.2f} s", top))
    if "soak" in report:
        soaked = report["soak"]
        rows.append((f"  soak: {soaked['images']} images at {soaked['images_per_s']:.1f} img/s",
                     f"RSS {soaked['rss_after_warmup_mb']:.0f} → {soaked['rss_end_mb']:.0f} MB",
                     f"max {soaked['rss_max_mb']:.0f}, peak {soaked['peak_rss_mb']:.0f} MB"))
    return rows
