"""`wwts trace show | slow`: a slow request read as a waterfall, in the terminal."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from wwts.cli_support import backend_failure, es_client_or_exit, table_console

app = typer.Typer(help="Read traces back from Elasticsearch.", no_args_is_help=True)
BAR_WIDTH = 40
KEY_ATTRIBUTES = (
    "image.path", "image.md5", "image.width", "image.height", "image.mode",
    "wwts.top1.label", "wwts.top1.score", "wwts.model.name", "wwts.device", "wwts.batch.size",
)


@app.command()
def show(trace_id: Annotated[str, typer.Argument(help="32 hex digits, e.g. from `classify --json` or a log record.")]) -> None:
    """The trace as a waterfall: span tree, offsets, durations, status, key attributes."""

    from telemetry import traces

    client = es_client_or_exit()
    try:
        spans = traces.spans_of(client, trace_id)
        records = traces.log_messages(client, trace_id)
    except Exception as exc:
        raise backend_failure("reading the trace failed", exc) from None
    if not spans:
        typer.echo(f"wwts: error: no spans for trace {trace_id} in wwts-traces (not exported yet, or too old?)", err=True)
        raise typer.Exit(1)
    table_console().print(render_waterfall(traces.tree(spans), spans, records, trace_id))


def render_waterfall(roots: list[Any], spans: list[Any], records: list[dict[str, Any]], trace_id: str) -> Any:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from telemetry.console import printable

    start = min(s.start for s in spans)
    end = max(s.start.timestamp() + s.duration_ms / 1000 for s in spans)
    total_ms = max((end - start.timestamp()) * 1000, 1e-6)
    table = Table(title=f"trace {trace_id} — {len(spans)} spans, {total_ms:.1f} ms", expand=False)
    table.add_column("span", no_wrap=True)
    table.add_column("offset ms", justify="right")
    table.add_column("duration ms", justify="right")
    table.add_column("waterfall", no_wrap=True)
    table.add_column("status")

    def add(span: Any, depth: int) -> None:
        offset = (span.start - start).total_seconds() * 1000
        left = int(round(offset / total_ms * BAR_WIDTH))
        width = max(1, int(round(span.duration_ms / total_ms * BAR_WIDTH)))
        bar = Text(" " * min(left, BAR_WIDTH - 1))
        bar.append("█" * min(width, BAR_WIDTH - min(left, BAR_WIDTH - 1)), style="red" if span.status == "ERROR" else "green")
        table.add_row("  " * depth + span.name, f"{offset:.1f}", f"{span.duration_ms:.1f}", bar, span.status)
        for child in span.children:
            add(child, depth + 1)

    for root in roots:
        add(root, 0)

    details = Table(show_header=False, title="key attributes")
    root = next((s for s in spans if s.name == "wwts.classify"), roots[0])
    for key in KEY_ATTRIBUTES:
        if key in root.attributes:
            details.add_row(key, printable(str(root.attributes[key])))
    stages = [s for s in spans if s is not root]
    if stages:
        slowest = max(stages, key=lambda s: s.duration_ms)
        details.add_row("slowest stage", f"{slowest.name} ({slowest.duration_ms:.1f} ms)")
        for key, value in sorted(slowest.attributes.items()):
            if key.startswith(("process.", "system.", "wwts.resource.")):
                details.add_row(f"  {key}", str(value))
    for key, value in sorted(root.events.items()):
        details.add_row(f"event {key}", printable(str(value))[:120])
    parts: list[Any] = [table, details]
    if records:
        messages = Table(title="log records of this trace", show_header=True)
        messages.add_column("time")
        messages.add_column("level")
        messages.add_column("message")
        for doc in records:
            level = doc.get("log.level") or doc.get("log", {}).get("level", "")
            messages.add_row(str(doc.get("@timestamp", ""))[11:23], str(level), printable(str(doc.get("message", ""))))
        parts.append(messages)
    return Group(*parts)


@app.command()
def slow(
    min_ms: Annotated[float, typer.Option("--min-ms", min=0, help="Only traces at least this long.")] = 1000,
    since: Annotated[str, typer.Option("--since", help="How far back: 30m, 1h, 7d.")] = "1h",
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many.")] = 20,
) -> None:
    """The slowest recent classify traces, each with its slowest stage and image."""
    from rich.table import Table

    from telemetry import traces
    from telemetry.console import printable

    client = es_client_or_exit()
    try:
        rows = traces.slow_traces(client, min_ms, since, limit)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    except Exception as exc:
        raise backend_failure("reading traces failed", exc) from None
    table = Table(title=f"{len(rows)} classify trace(s) ≥ {min_ms:g} ms in the last {since}, slowest first")
    for column in ("trace id", "total ms", "slowest stage", "stage ms", "image", "top-1", "status"):
        table.add_column(column, overflow="fold")
    for root, stage in rows:
        table.add_row(
            root.trace_id,
            f"{root.duration_ms:.1f}",
            stage.name if stage else "-",
            f"{stage.duration_ms:.1f}" if stage else "-",
            printable(str(root.attributes.get("image.path", "-"))),
            str(root.attributes.get("wwts.top1.label", "-")),
            root.status,
        )
    table_console().print(table)
