"""`wwts classify`: start telemetry, build the pipeline, run the inputs, show each result.

The pipeline decodes ahead while its runtime opens (see `pipeline.driver`); this module
only renders: one stdout line (or JSON object) per input, the seed script's console
lines for each classified image, and one stderr line for each failed one.
"""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from pipeline import inputs as input_paths
from pipeline.device import DeviceError
from pipeline.driver import Pipeline, PipelineConfig
from pipeline.models import DEFAULT_MODEL, ModelError
from pipeline.results import Result
from pipeline.runtimes import RuntimeUnavailable
from telemetry.console import line
from telemetry.records import STARTUP_EVENT
from telemetry.session import Telemetry, TelemetryConfig
from wwts import __version__, render
from wwts.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from wwts.facts import runtime_facts, startup_line
from wwts.settings import Settings
from wwts.signals import GracefulStop

PROGRESS_MIN_INPUTS = 10  # a bar for fewer images is noise
SEPARATOR = "=" * 60
SETUP_ERRORS = (ModelError, DeviceError, RuntimeUnavailable)


@dataclass
class ClassifyOptions:
    paths: list[str]
    top_k: int = 5
    model: str = DEFAULT_MODEL
    model_dir: Path | None = None
    runtime: str = "auto"
    device: str = "auto"
    batch_size: int | None = None  # None: auto
    recursive: bool = False
    as_json: bool = False
    log_dir: Path = Path("logs")
    telemetry: bool = True


def pipeline_config(
    settings: Settings, *, model: str, model_dir: Path | None, runtime: str, device: str,
    batch_size: int | None, top_k: int,
) -> PipelineConfig:
    """The pipeline a front door runs: its flags over the environment's settings."""
    return PipelineConfig(
        model=model, model_dir=model_dir, runtime=runtime, device=device, batch_size=batch_size, top_k=top_k,
        max_pixels=settings.max_image_pixels, cache_dir=settings.cache_dir,
    )


def run_classify(options: ClassifyOptions, settings: Settings, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    telemetry = Telemetry(
        TelemetryConfig(
            log_dir=options.log_dir, service_version=__version__, enabled=options.telemetry,
            console_level=logging.WARNING if options.as_json else logging.INFO,
            thresholds=settings.thresholds, es=settings.es,
        )
    ).start()
    log = telemetry.logger
    pipeline: Pipeline | None = None
    try:
        config = pipeline_config(
            settings, model=options.model, model_dir=options.model_dir, runtime=options.runtime,
            device=options.device, batch_size=options.batch_size, top_k=options.top_k,
        )
        pipeline = Pipeline(config, telemetry.hooks())
        facts = runtime_facts(pipeline.plan, options.model)
        log.info(startup_line(facts), extra={**STARTUP_EVENT, "wwts": {"startup": facts}})
        items = list(input_paths.expand(options.paths, recursive=options.recursive))
        # What is alive now (modules, the model's session) lives as long as the run: left
        # out of the collector's full passes, which would otherwise stall a long run.
        gc.freeze()
        with GracefulStop() as stop:
            failed = _show(pipeline.run(items, stopped=stop.requested), options, telemetry, out, len(items))
        if stop.exit_code is not None:
            log.warning("stopped by signal %d; in-flight images completed", stop.signum)
            return stop.exit_code
        return EXIT_FAILED if failed else EXIT_OK
    except SETUP_ERRORS as exc:  # the model, runtime or device cannot be had (before or when opening)
        log.error("model %s: %s", options.model, exc, extra=STARTUP_EVENT)
        return EXIT_USAGE
    finally:
        log.info(SEPARATOR)
        if pipeline is not None:
            pipeline.close()
        telemetry.shutdown()


def _show(results: Iterable[Result], options: ClassifyOptions, telemetry: Telemetry, out: TextIO, total: int) -> int:
    """Render each result as it comes; returns how many failed."""
    failed = 0
    with _progress(total) as advance:
        for result in results:
            if result.ok:
                if not options.as_json:
                    # one write per image: a line-buffered stderr makes a system call per line
                    # (sys.stderr is looked up each time: rich may redirect it)
                    lines = render.console_lines(result, telemetry.snapshot())
                    sys.stderr.write("".join(line("INFO", text) + "\n" for text in lines))
            else:
                failed += 1
                sys.stderr.write(line("ERROR", f"{result.path}: {render.failure(result)}") + "\n")
            out.write((render.json_line(result) if options.as_json else render.stdout_line(result)) + "\n")
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
