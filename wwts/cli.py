"""The `wwts` command line: the front door. CLI → runner → stages; telemetry around."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from pipeline.models import DEFAULT_MODEL, names
from wwts import __version__
from wwts.cli_support import fail_usage, settings_or_exit

app = typer.Typer(
    name="wwts",
    help="Observable image recognition: Chinese labels, traced stages, ECS logs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def parse_batch_size(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        size = int(value)
    except ValueError:
        raise typer.BadParameter("must be a positive integer or 'auto'") from None
    if size < 1:
        raise typer.BadParameter("must be a positive integer or 'auto'")
    return size


@app.command()
def classify(
    paths: Annotated[
        list[Path],
        # readable=False: an unreadable file is one failed input (exit 1), not a usage error
        typer.Argument(help="Image files and/or directories.", show_default=False, readable=False),
    ],
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="How many labels per image.")] = 5,
    model: Annotated[str, typer.Option("--model", help=f"One of: {', '.join(names())}.")] = DEFAULT_MODEL,
    model_dir: Annotated[
        Path | None, typer.Option("--model-dir", envvar="WWTS_MODEL_DIR", help="ModelScope checkpoint directory.")
    ] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
    batch_size: Annotated[
        str, typer.Option("--batch-size", help="Images per forward pass, or 'auto'.", parser=parse_batch_size)
    ] = "auto",
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Walk directories recursively.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per input on stdout.")] = False,
    log_dir: Annotated[Path | None, typer.Option("--log-dir", envvar="WWTS_LOG_DIR", help="Local log directory.")] = None,
) -> None:
    """Classify images: top-k Chinese labels with 4-decimal confidences."""
    from wwts.classify import ClassifyOptions, run_classify

    if model not in names():
        raise fail_usage(f"unknown model {model!r}; choose one of: {', '.join(names())}")
    settings = settings_or_exit()
    options = ClassifyOptions(
        paths=[str(p) for p in paths],
        top_k=top_k,
        model=model,
        model_dir=model_dir or settings.model_dir,
        device=device,
        batch_size=batch_size,  # type: ignore[arg-type]
        recursive=recursive,
        as_json=as_json,
        log_dir=log_dir or settings.log_dir,
    )
    raise typer.Exit(run_classify(options, settings))


@app.command()
def info(as_json: Annotated[bool, typer.Option("--json", help="Print the facts as JSON.")] = False) -> None:
    """Startup facts: Python, torch, CUDA, GPU, models, backends (and whether they answer)."""
    from wwts.facts import all_facts

    facts = all_facts(settings_or_exit())
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


def _register_groups() -> None:
    from wwts import elk_cli, logs_cli, trace_cli
    from wwts.bench import bench  # cheap: typer only; the rest is imported when it runs

    app.command()(bench)

    app.add_typer(logs_cli.app, name="logs")
    app.add_typer(elk_cli.app, name="elk")
    app.add_typer(trace_cli.app, name="trace")


_register_groups()


def main() -> None:
    """Run the app, then leave without the interpreter's teardown.

    Tearing down torch and timm takes 2-3 s on this machine, longer than a whole
    single-image run; everything of ours is flushed and closed by then (telemetry shuts
    down inside the command), so flush the standard streams and exit directly.
    """
    logging.captureWarnings(True)
    code = 0
    try:
        app()
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
            code = 1
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
    sys.exit(main())
