"""`wwts classify`: set up telemetry, build the model, run the inputs, print results."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from pipeline import inputs as input_paths
from pipeline.device import DeviceError
from pipeline.device import check as check_device
from pipeline.device import resolve as resolve_device
from pipeline.models import ModelError, create, preprocessing
from pipeline.runner import CpuThreads, Hooks, Prefetcher, Result, Runner, available_cores
from telemetry import elastic
from telemetry.hooks import Thresholds
from telemetry.session import Telemetry, TelemetryConfig
from wwts import __version__
from wwts.cli_support import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from wwts.facts import runtime_facts
from wwts.results import json_line, to_line
from wwts.settings import Settings
from wwts.signals import GracefulStop

PROGRESS_MIN_INPUTS = 10  # a bar for fewer images is noise
SEPARATOR = "=" * 60
# Measured on 2 cores, EfficientNet-Lite0 with BatchNorm folded, channels_last
# (benchmarks/README.md): batch 4 beats 2 by ~30 % per image; 8 is no better.
CPU_AUTO_BATCH = 4
GPU_AUTO_BATCH = 32


@dataclass
class ClassifyOptions:
    paths: list[str]
    top_k: int = 5
    model: str = "efficientnet-lite0"
    model_dir: Path | None = None
    device: str = "auto"
    batch_size: int | str = "auto"
    recursive: bool = False
    as_json: bool = False
    log_dir: Path = Path("logs")
    telemetry: bool = True
    workers: int = 1


def auto_batch_size(device_type: str) -> int:
    return GPU_AUTO_BATCH if device_type == "cuda" else CPU_AUTO_BATCH


def cpu_threads(workers: int) -> CpuThreads:
    """Torch's intra-op threads for a CPU run: the cores the load workers leave free
    while they decode, every core once they are done (on 2 cores: 1, then 2)."""
    cores = available_cores()
    return CpuThreads(while_decoding=max(1, cores - max(0, workers)), after_decoding=cores)


def run_classify(options: ClassifyOptions, settings: Settings, out: TextIO | None = None) -> int:
    """Decoding starts first, on a worker thread, and runs while this thread imports
    torch and builds the model (seconds on a small CPU): see `pipeline.runner`."""
    out = out or sys.stdout
    try:
        check_device(options.device)
    except DeviceError as exc:
        print(f"wwts: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    telemetry = Telemetry(
        TelemetryConfig(
            log_dir=options.log_dir,
            service_version=__version__,
            enabled=options.telemetry,
            console_level=logging.WARNING if options.as_json else logging.INFO,
            thresholds=Thresholds(settings.latency_alert_ms, settings.gpu_temp_alert_c),
            es_client_factory=(lambda: elastic.client(settings)) if settings.es_url else None,
        )
    ).start()
    log = telemetry.logger
    try:
        try:
            spec = preprocessing(options.model)
        except ModelError as exc:
            log.error("model %s: %s", options.model, exc, extra={"event": {"dataset": "wwts.startup"}})
            return EXIT_USAGE
        hooks = telemetry.hooks(options.model)
        items = list(input_paths.expand(options.paths, recursive=options.recursive))
        prefetch = Prefetcher(items, spec, hooks, workers=options.workers, max_pixels=settings.max_image_pixels)
        with prefetch, GracefulStop() as stop:
            code = _classify(options, prefetch, hooks, log, stop, out, len(items))
        if stop.exit_code is not None:
            log.warning("stopped by signal %d; in-flight images completed", stop.signum)
            return stop.exit_code
        return code
    finally:
        log.info(SEPARATOR)
        telemetry.shutdown()


def _classify(
    options: ClassifyOptions,
    prefetch: Prefetcher,
    hooks: Hooks,
    log: logging.Logger,
    stop: GracefulStop,
    out: TextIO,
    total: int,
) -> int:
    """Import torch, build the model and run the prepared images through it."""
    try:
        device = resolve_device(options.device)
    except DeviceError as exc:
        print(f"wwts: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    hooks.set_device(str(device))
    facts = runtime_facts(str(device))
    facts["model"] = options.model
    log.info(
        "Python %s | torch %s | CUDA available: %s | GPU: %s | model: %s | device: %s",
        facts["python"], facts["torch"], facts["cuda_available"], ", ".join(facts["gpu"]) or "none",
        options.model, device,
        extra={"event": {"dataset": "wwts.startup", "kind": "event"}, "wwts": {"startup": facts}},
    )
    try:
        model = create(options.model, options.model_dir)
    except ModelError as exc:
        log.error("model %s: %s", options.model, exc, extra={"event": {"dataset": "wwts.startup"}})
        return EXIT_USAGE
    batch_size = auto_batch_size(device.type) if options.batch_size == "auto" else int(options.batch_size)
    runner = Runner(
        model, device, top_k=options.top_k, batch_size=batch_size, hooks=hooks,
        workers=options.workers, cpu_threads=cpu_threads(options.workers),
    )
    results = runner.complete(stop.until_stopped(prefetch), prefetch)
    failed = _emit_results(results, options, str(device), total, out)
    return EXIT_FAILED if failed else EXIT_OK


def _emit_results(results: Iterable[Result], options: ClassifyOptions, device: str, total: int, out: TextIO) -> int:
    failed = 0
    with _progress(total) as advance:
        for result in results:
            failed += not result.ok
            if options.as_json:
                out.write(json_line(result, options.model, device) + "\n")
            else:
                out.write(to_line(result) + "\n")
            out.flush()
            advance()
    return failed


class _progress:
    """A rich progress bar on stderr when it is a terminal and there are many inputs."""

    def __init__(self, total: int) -> None:
        self.total = total
        self._progress = None

    def __enter__(self):  # type: ignore[no-untyped-def]
        if self.total < PROGRESS_MIN_INPUTS or not sys.stderr.isatty():
            return lambda: None
        from rich.progress import Progress

        self._progress = Progress(transient=True, redirect_stderr=True, redirect_stdout=False)
        self._progress.__enter__()
        task = self._progress.add_task("classifying", total=self.total)
        return lambda: self._progress.advance(task)  # type: ignore[union-attr]

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(None, None, None)

