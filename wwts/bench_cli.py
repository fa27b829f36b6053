"""`wwts bench`'s command line. The benchmark itself (`wwts.bench`) is imported when the
command runs, so that no other command pays for importing it at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.device import AUTO
from wwts.settings import DEFAULT_RUNTIME

DEFAULT_REPEATS = 3


def bench(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Images or directories (default: the photo set built from benchmarks/samples).",
                       show_default=False),
    ] = None,
    images: Annotated[
        int | None,
        typer.Option("--images", "-n", min=1, help="How many images per run.", show_default="the photo set's size"),
    ] = None,
    repeats: Annotated[
        int, typer.Option("--repeats", "-r", min=1, help="Alternating repeats; medians reported.")
    ] = DEFAULT_REPEATS,
    runtime: Annotated[
        str, typer.Option("--runtime", help="auto, onnxruntime or torch (for every wwts run).")
    ] = DEFAULT_RUNTIME,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N (for every wwts run).")] = AUTO,
    batch_size: Annotated[
        int | None,
        typer.Option("--batch-size", min=1, help="Images per forward pass (wwts and the floor).", show_default="auto"),
    ] = None,
    processes: Annotated[
        bool, typer.Option("--processes/--no-processes", help="Whole processes and the cold start, or only in process.")
    ] = True,
    soak_images: Annotated[
        int, typer.Option("--soak", min=0, help="Also classify N images in one wwts process: its RSS growth.")
    ] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """wwts against the seed loop and the floor, telemetry on vs off, cold start, RSS."""
    from wwts.bench import run_command

    run_command(paths, images, repeats, runtime, device, batch_size, processes, soak_images, as_json)
