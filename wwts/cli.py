"""The `wwts` command line: the Typer app, built when the command runs (importing this
module defines things and does nothing else), and the one place errors become exit codes.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from pipeline.defaults import DEFAULT_TOP_K
from pipeline.models import DEFAULT_MODEL, names
from wwts import __version__
from wwts.errors import EXIT_USAGE, UsageError, WwtsError
from wwts.serve import config as serve_config


def parse_batch_size(value: str) -> int | None:
    """A positive integer, or None for `auto`."""
    if value == "auto":
        return None
    try:
        size = int(value)
    except ValueError:
        raise typer.BadParameter("must be a positive integer or 'auto'") from None
    if size < 1:
        raise typer.BadParameter("must be a positive integer or 'auto'")
    return size


def classify(
    paths: Annotated[
        list[Path],
        # readable=False: an unreadable file is one failed input (exit 1), not a usage error
        typer.Argument(help="Image files and/or directories.", show_default=False, readable=False),
    ],
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="How many labels per image.")] = DEFAULT_TOP_K,
    model: Annotated[str, typer.Option("--model", help=f"One of: {', '.join(names())}.")] = DEFAULT_MODEL,
    model_dir: Annotated[
        Path | None, typer.Option("--model-dir", envvar="WWTS_MODEL_DIR", help="ModelScope checkpoint directory.")
    ] = None,
    runtime: Annotated[
        str | None, typer.Option("--runtime", envvar="WWTS_RUNTIME", help="auto, onnxruntime or torch.", show_default="auto")
    ] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
    batch_size: Annotated[
        str, typer.Option("--batch-size", help="Images per forward pass, or 'auto'.")
    ] = "auto",
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Walk directories recursively.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per input on stdout.")] = False,
    log_dir: Annotated[Path | None, typer.Option("--log-dir", envvar="WWTS_LOG_DIR", help="Local log directory.")] = None,
) -> None:
    """Classify images: top-k Chinese labels with 4-decimal confidences."""
    from wwts.classify import ClassifyOptions, run_classify
    from wwts.cli_support import settings as read_settings

    if model not in names():
        raise UsageError(f"unknown model {model!r}; choose one of: {', '.join(names())}")
    size = parse_batch_size(batch_size)
    settings = read_settings()
    options = ClassifyOptions(
        paths=[str(p) for p in paths], top_k=top_k, model=model, model_dir=model_dir or settings.model_dir,
        runtime=runtime or settings.runtime, device=device, batch_size=size, recursive=recursive,
        as_json=as_json, log_dir=log_dir or settings.log_dir,
    )
    raise typer.Exit(run_classify(options, settings))


def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on (loopback by default).")] = serve_config.DEFAULT_HOST,
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="TCP port.")] = serve_config.DEFAULT_PORT,
    model: Annotated[str, typer.Option("--model", help=f"One of: {', '.join(names())}.")] = DEFAULT_MODEL,
    model_dir: Annotated[
        Path | None, typer.Option("--model-dir", envvar="WWTS_MODEL_DIR", help="ModelScope checkpoint directory.")
    ] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
    runtime: Annotated[
        str | None, typer.Option("--runtime", envvar="WWTS_RUNTIME", help="auto, onnxruntime or torch.", show_default="auto")
    ] = None,
    max_batch_size: Annotated[
        str, typer.Option("--max-batch-size", help="Most requests per forward pass, or 'auto'.")
    ] = "auto",
    max_batch_delay_ms: Annotated[
        float, typer.Option("--max-batch-delay-ms", min=0, help="How long a request may wait for others to batch with.")
    ] = serve_config.DEFAULT_MAX_BATCH_DELAY_MS,
    max_queue: Annotated[
        int, typer.Option("--max-queue", min=1, help="Requests in progress at once; beyond it 503 at once.")
    ] = serve_config.DEFAULT_MAX_QUEUE,
    max_body_mb: Annotated[
        float, typer.Option("--max-body-mb", min=0.001, help="Largest request body (MiB); larger is 413.")
    ] = serve_config.DEFAULT_MAX_BODY_MB,
    log_dir: Annotated[Path | None, typer.Option("--log-dir", envvar="WWTS_LOG_DIR", help="Local log directory.")] = None,
) -> None:
    """Serve the pipeline over HTTP: POST /v1/classify, GET /healthz, GET /readyz."""
    from wwts.cli_support import settings as read_settings
    from wwts.serve.command import run_serve

    if model not in names():
        raise UsageError(f"unknown model {model!r}; choose one of: {', '.join(names())}")
    settings = read_settings()
    options = serve_config.ServeOptions(
        host=host, port=port, model=model, model_dir=model_dir or settings.model_dir, device=device,
        runtime=runtime or settings.runtime, max_batch_size=parse_batch_size(max_batch_size),
        max_batch_delay_ms=max_batch_delay_ms, max_queue=max_queue, max_body_mb=max_body_mb,
        log_dir=log_dir or settings.log_dir,
    )
    raise typer.Exit(run_serve(options, settings))


def info(as_json: Annotated[bool, typer.Option("--json", help="Print the facts as JSON.")] = False) -> None:
    """Startup facts: Python, runtimes, GPU, models, backends (and whether they answer)."""
    from wwts.cli_support import settings
    from wwts.facts import all_facts

    facts = all_facts(settings())
    if as_json:
        typer.echo(json.dumps(facts, ensure_ascii=False, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"wwts {__version__}", show_header=False)
    for key, value in _flatten(facts):
        table.add_row(key, "—" if value is None else str(value))
    Console().print(table)


def _flatten(facts: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in facts.items():
        if isinstance(value, dict):
            rows += _flatten(value, f"{prefix}{key}.")
        elif isinstance(value, list):
            rows.append((prefix + key, ", ".join(map(str, value)) or "—"))
        else:
            rows.append((prefix + key, value))
    return rows


def _version(value: bool) -> None:
    if value:
        typer.echo(f"wwts {__version__}")
        raise typer.Exit(0)


def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Observable image recognition: Chinese labels, traced stages, ECS logs."""


def build_app() -> typer.Typer:
    """The app with every command group; the groups import their heavy parts when run."""
    from wwts import bench_cli, elk_cli, logs_cli, trace_cli

    app = typer.Typer(name="wwts", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
    app.callback()(_root)
    app.command()(classify)
    app.command()(info)
    app.command()(bench_cli.bench)
    app.command()(serve)
    app.add_typer(logs_cli.app, name="logs")
    app.add_typer(elk_cli.app, name="elk")
    app.add_typer(trace_cli.app, name="trace")
    return app


def main() -> None:
    """Run the app, map a `WwtsError` to its line and exit code, then leave without the
    interpreter's teardown.

    Tearing down torch and timm takes 2-3 s on a small machine, longer than a whole
    single-image run; everything of ours is flushed and closed by then (telemetry shuts
    down inside the command), so flush the standard streams and exit directly.
    """
    logging.captureWarnings(True)
    code = 0
    try:
        build_app()(standalone_mode=True)
    except WwtsError as exc:
        print(f"wwts: error: {exc.message}", file=sys.stderr)
        code = exc.exit_code
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
            code = EXIT_USAGE
        else:
            code = exc.code or 0
    except KeyboardInterrupt:  # a second Ctrl-C: stop now
        code = 130
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":
    main()
